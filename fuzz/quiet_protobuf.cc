// Linked into the fuzz targets that parse protobuf. libprotobuf logs every string field with
// invalid UTF-8 at ERROR level; the fuzzer makes thousands a second, and the log would be all
// the run prints (and most of its time). libFuzzer calls this once before the first input.
#include <google/protobuf/stubs/logging.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}
