// The cluster library's sources are listed in cluster/CMakeLists.txt; this file keeps the
// library non-empty while its parts land one at a time.
namespace edgekv::cluster {}
