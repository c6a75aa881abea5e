// ThreadSanitizer suppressions compiled into our binaries (only under -fsanitize=thread).
//
// The Debian Paho libraries are not built with TSan, so the atomic reference counts of the
// shared_ptr tokens they delete on their own threads are invisible to it: every publish
// whose token we release first is reported as a race in operator delete called from
// mqtt::async_client::remove_token. That is a false positive of mixing instrumented and
// uninstrumented code, not a race of ours; reports involving our own frames only still stop
// the run. The same holds for the Debian cpp-httplib library (libcpp-httplib.so), whose
// server threads some tests run as an in-process hub (tests/sync/downstream_edged_test.cc):
// its own buffers, shared between its uninstrumented threads, are reported from memcmp.
// The same for Debian's OpenSSL (libcrypto, libssl) in hubd, whose TLS handshakes run on
// several threads at once: objects shared through the SSL_CTX (its session cache, the
// certificate store) are handed between threads by OpenSSL's own atomic reference counts,
// which TSan cannot see, and are reported as a race between ASN1_STRING_set (malloc) on one
// handshake thread and ASN1_STRING_cmp (memcmp) on another.
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() {
  return "race:libpaho-mqttpp3.so\n"
         "race:libpaho-mqtt3as.so\n"
         "race:libcpp-httplib.so\n"
         "race:libcrypto.so\n"
         "race:libssl.so\n";
}
#endif
