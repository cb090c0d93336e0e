// edgekv_load: a load generator for edgekv's native ZeroMQ protocol, on libedgekv.
//
// Each of --clients threads owns one Client (one connection) and keeps --pipeline
// requests in flight on it. Keys are drawn uniformly from a key space of --keys keys
// ("key:00000042"); each request is a GET with probability --get-ratio, else a PUT of a
// --value-bytes value. The run lasts --seconds, or until --requests have completed.
// Prints throughput and latency percentiles (from send to answer) as one table row, or
// JSON with --json.
//
// Usage: edgekv_load [--endpoint URL] [--clients N] [--pipeline D] [--value-bytes B]
//                    [--keys K] [--get-ratio R] [--seconds S | --requests N]
//                    [--preload] [--json]
#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "common/random.h"

namespace po = boost::program_options;
using edgekv::client::Client;
using edgekv::client::ClientOptions;
using edgekv::client::Completion;
using edgekv::client::RequestKind;
using Clock = std::chrono::steady_clock;

namespace {

struct LoadOptions {
  std::string endpoint = "tcp://127.0.0.1:7400";
  int clients = 16;
  int pipeline = 1;
  size_t value_bytes = 100;
  uint64_t keys = 100'000;
  double get_ratio = 0.5;
  double seconds = 10;
  uint64_t requests = 0;  // 0: run for `seconds`
  bool preload = false;
  bool json = false;
  int timeout_ms = 10'000;
};

struct WorkerResult {
  uint64_t gets = 0;
  uint64_t puts = 0;
  uint64_t not_found = 0;
  uint64_t errors = 0;
  std::string first_error;
  std::vector<uint32_t> latencies_us;
};

std::string key_name(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "key:%010llu", static_cast<unsigned long long>(i));
  return buf;
}

// A value of the given size that compresses like ordinary data (text-ish, not all zeros),
// so the compression path costs what it would in use.
std::string make_value(size_t bytes, edgekv::Random& rng) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789 ";
  std::string v(bytes, ' ');
  for (char& c : v) c = kAlphabet[rng.uniform(sizeof kAlphabet - 1)];
  return v;
}

void record(WorkerResult& out, const Completion& c) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(c.completed_at - c.sent_at);
  out.latencies_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us.count(), UINT32_MAX)));
  if (c.kind == RequestKind::kGet) {
    ++out.gets;
  } else {
    ++out.puts;
  }
  if (c.status.code() == edgekv::Code::kNotFound) {
    ++out.not_found;
  } else if (!c.status.ok()) {
    if (out.errors++ == 0) out.first_error = c.status.to_string();
  }
}

void run_worker(const LoadOptions& opt, int index, std::atomic<uint64_t>& issued,
                Clock::time_point deadline, WorkerResult& out) {
  ClientOptions copt;
  copt.endpoint = opt.endpoint;
  copt.timeout_ms = opt.timeout_ms;
  Client client(copt);
  edgekv::Random rng(0x5eed0000 + static_cast<uint64_t>(index));
  std::string value = make_value(opt.value_bytes, rng);
  auto may_issue = [&] {
    if (opt.requests > 0) return issued.fetch_add(1) < opt.requests;
    return Clock::now() < deadline;
  };
  auto issue = [&] {
    std::string key = key_name(rng.uniform(opt.keys));
    if (rng.chance(opt.get_ratio)) {
      client.get_async(key);
    } else {
      client.put_async(key, value);
    }
  };
  bool issuing = true;
  while (issuing && static_cast<int>(client.in_flight()) < opt.pipeline) {
    issuing = may_issue();
    if (issuing) issue();
  }
  while (client.in_flight() > 0) {
    for (const Completion& c : client.poll(-1)) {
      record(out, c);
      if (issuing) {
        issuing = may_issue();
        if (issuing) issue();
      }
    }
  }
}

// Writes every key once, with the clients in parallel and deep pipelines.
bool preload(const LoadOptions& opt) {
  std::vector<std::thread> threads;
  std::atomic<bool> ok{true};
  for (int t = 0; t < opt.clients; ++t) {
    threads.emplace_back([&, t] {
      ClientOptions copt;
      copt.endpoint = opt.endpoint;
      copt.timeout_ms = opt.timeout_ms;
      Client client(copt);
      edgekv::Random rng(0x10ad0000 + static_cast<uint64_t>(t));
      std::string value = make_value(opt.value_bytes, rng);
      for (uint64_t k = static_cast<uint64_t>(t); k < opt.keys || client.in_flight() > 0;) {
        while (k < opt.keys && client.in_flight() < 64) {
          client.put_async(key_name(k), value);
          k += static_cast<uint64_t>(opt.clients);
        }
        for (const Completion& c : client.poll(-1)) {
          if (!c.status.ok()) {
            std::fprintf(stderr, "edgekv_load: preload failed: %s\n", c.status.to_string().c_str());
            ok = false;
            return;
          }
        }
        if (k >= opt.keys && client.in_flight() == 0) break;
      }
    });
  }
  for (auto& t : threads) t.join();
  return ok;
}

uint32_t percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

int parse(int argc, char** argv, LoadOptions& opt) {
  po::options_description desc("edgekv_load options");
  desc.add_options()("help", "this text")(
      "endpoint", po::value(&opt.endpoint)->default_value(opt.endpoint), "node client endpoint")(
      "clients", po::value(&opt.clients)->default_value(opt.clients), "concurrent connections")(
      "pipeline", po::value(&opt.pipeline)->default_value(opt.pipeline),
      "requests in flight per connection")(
      "value-bytes", po::value(&opt.value_bytes)->default_value(opt.value_bytes), "PUT value size")(
      "keys", po::value(&opt.keys)->default_value(opt.keys), "key space size")(
      "get-ratio", po::value(&opt.get_ratio)->default_value(opt.get_ratio),
      "fraction of requests that are GETs (0..1)")(
      "seconds", po::value(&opt.seconds)->default_value(opt.seconds), "run length")(
      "requests", po::value(&opt.requests)->default_value(opt.requests),
      "stop after this many requests instead (0: use --seconds)")(
      "timeout-ms", po::value(&opt.timeout_ms)->default_value(opt.timeout_ms), "request timeout")(
      "preload", po::bool_switch(&opt.preload), "write every key once before measuring")(
      "json", po::bool_switch(&opt.json), "print one JSON object");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "edgekv_load: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 1;
  }
  if (opt.clients < 1 || opt.pipeline < 1 || opt.keys < 1 || opt.get_ratio < 0 ||
      opt.get_ratio > 1 || opt.seconds <= 0) {
    std::fprintf(stderr,
                 "edgekv_load: --clients, --pipeline and --keys must be >= 1, --get-ratio in "
                 "0..1, --seconds > 0\n");
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  LoadOptions opt;
  if (int rc = parse(argc, argv, opt); rc != 0) return rc == 1 ? 0 : rc;
  if (opt.preload && !preload(opt)) return 1;

  std::vector<WorkerResult> results(static_cast<size_t>(opt.clients));
  std::vector<std::thread> threads;
  std::atomic<uint64_t> issued{0};
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(opt.seconds));
  for (int t = 0; t < opt.clients; ++t) {
    threads.emplace_back(run_worker, std::cref(opt), t, std::ref(issued), deadline,
                         std::ref(results[static_cast<size_t>(t)]));
  }
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  WorkerResult total;
  for (auto& r : results) {
    total.gets += r.gets;
    total.puts += r.puts;
    total.not_found += r.not_found;
    if (total.errors == 0 && r.errors > 0) total.first_error = r.first_error;
    total.errors += r.errors;
    total.latencies_us.insert(total.latencies_us.end(), r.latencies_us.begin(),
                              r.latencies_us.end());
  }
  std::sort(total.latencies_us.begin(), total.latencies_us.end());
  uint64_t ops = total.gets + total.puts;
  double ops_per_s = static_cast<double>(ops) / elapsed;
  uint32_t p50 = percentile(total.latencies_us, 0.50);
  uint32_t p99 = percentile(total.latencies_us, 0.99);
  uint32_t p999 = percentile(total.latencies_us, 0.999);
  if (opt.json) {
    std::printf(
        "{\"ops\":%llu,\"seconds\":%.3f,\"ops_per_s\":%.0f,\"gets\":%llu,\"puts\":%llu,"
        "\"not_found\":%llu,\"errors\":%llu,\"p50_us\":%u,\"p99_us\":%u,\"p999_us\":%u}\n",
        static_cast<unsigned long long>(ops), elapsed, ops_per_s,
        static_cast<unsigned long long>(total.gets), static_cast<unsigned long long>(total.puts),
        static_cast<unsigned long long>(total.not_found),
        static_cast<unsigned long long>(total.errors), p50, p99, p999);
  } else {
    std::printf("%-10s %10s %8s %8s %8s %8s %8s\n", "ops", "ops/s", "p50_us", "p99_us", "p999_us",
                "notfound", "errors");
    std::printf("%-10llu %10.0f %8u %8u %8u %8llu %8llu\n", static_cast<unsigned long long>(ops),
                ops_per_s, p50, p99, p999, static_cast<unsigned long long>(total.not_found),
                static_cast<unsigned long long>(total.errors));
  }
  if (total.errors > 0) {
    std::fprintf(stderr, "edgekv_load: %llu errors, first: %s\n",
                 static_cast<unsigned long long>(total.errors), total.first_error.c_str());
    return 1;
  }
  return 0;
}
