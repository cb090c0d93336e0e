// A program using libedgekv as an application does: the headers under include/edgekv and
// the flags of `pkg-config --cflags --libs edgekv`:
//
//   g++ -std=c++20 put_get.cc $(pkg-config --cflags --libs edgekv) -o put_get
//   ./put_get tcp://127.0.0.1:7400 greeting hello
//
// It writes KEY = VALUE to the node at ENDPOINT, reads it back and prints what it read.
// Exit status: 0 when the value read back is the one written, 1 when a request failed (the
// error is printed), 2 for bad usage.
#include <cstdio>
#include <string>

#include "client/client.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ENDPOINT KEY VALUE\n", argv[0]);
    return 2;
  }
  edgekv::client::ClientOptions options;
  options.endpoint = argv[1];
  options.timeout_ms = 2000;
  edgekv::client::Client client(options);

  edgekv::Result<edgekv::client::PutReply> put = client.put(argv[2], argv[3]);
  if (!put.ok()) {
    std::fprintf(stderr, "put: %s\n", put.status().to_string().c_str());
    return 1;
  }
  edgekv::Result<edgekv::client::GetReply> got = client.get(argv[2]);
  if (!got.ok()) {
    std::fprintf(stderr, "get: %s\n", got.status().to_string().c_str());
    return 1;
  }
  std::printf("%s = %s (version %s)\n", argv[2], got->value.c_str(),
              got->version.to_string().c_str());
  return got->value == argv[3] ? 0 : 1;
}
