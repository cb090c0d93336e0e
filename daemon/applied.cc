#include "daemon/applied.h"

#include <string>
#include <utility>

namespace edgekv::daemon {

AppliedChanges::AppliedChanges(size_t read_cache_bytes, Feed feed)
    : cache_(read_cache_bytes), feed_(std::move(feed)) {}

cluster::ChangeHook AppliedChanges::hook() {
  return
      [this](ChangeEvent event, cluster::ChangeSource source) { apply(std::move(event), source); };
}

void AppliedChanges::apply(ChangeEvent event, cluster::ChangeSource source) {
  feed_(event, source);
  store::Record record;
  record.key = std::move(event.key);
  record.version = event.version;
  switch (event.op) {
    case ChangeOp::kPut:
      record.value = std::move(event.value);
      record.expiry = event.expiry;
      break;
    case ChangeOp::kDelete: record.tombstone = true; break;
    case ChangeOp::kExpire:
      record.tombstone = true;
      record.expiry = event.expiry;
      break;
  }
  const bool may_add =
      source == cluster::ChangeSource::kCoordinated && event.op != ChangeOp::kExpire;
  cache_.put_if_newer(std::move(record),
                      may_add ? ReadCache::Absent::kAdd : ReadCache::Absent::kSkip);
}

void AppliedChanges::on_read(std::string_view key, const Result<store::Record>& found) {
  if (found.ok()) {
    cache_.put(*found);
  } else if (found.status().code() == Code::kNotFound) {
    store::Record absent;
    absent.key = std::string(key);
    absent.tombstone = true;
    cache_.put(std::move(absent));
  }
}

}  // namespace edgekv::daemon
