// libFuzzer target: hub/http/tls_stream.h, the server side of TLS that every hubd connection
// goes through, fed by a hostile peer over a real socket. hubd's TLS policy
// (common/tls_policy.h) and a P-256 certificate made at start-up, as hubd is deployed.
//
// Input: [mode][chunking][rest]. The peer writes its bytes in chunks whose sizes come from a
// generator seeded by the chunking byte (1-7 bytes or up to 4 kB each: records split anywhere).
//   - mode even: the rest, raw, from a peer that never shook hands (the seeds hold real
//     ClientHellos), then a half-close. The handshake must end, with an error unless the bytes
//     were a whole handshake.
//   - mode odd: a real mutual-TLS client shakes hands first. Then the rest's first two bytes
//     give a length L: the next L bytes go as application data (SSL_write in chunks) and the
//     server must read back exactly those bytes; whatever follows goes raw onto the socket, as
//     a forged or broken record, and the server's next read must fail and not hang.
// Checks, besides ASan/UBSan: every operation completes (5 s bound), no buffer is held once an
// operation is over (what TlsStream is for), the round trip keeps the bytes.
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "common/tls_policy.h"
#include "hub/http/tls_stream.h"

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using freshsync::fuzz::Check;
using freshsync::hub::http::TlsStream;
using error_code = boost::system::error_code;

// One self-signed P-256 certificate: the server's, the client's and the CA that both trust.
struct Identity {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  Identity() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 7 * 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    Check(X509_sign(cert, key, EVP_sha256()) > 0, "the fuzz certificate signs");
  }
  void Install(SSL_CTX* ctx) const {
    Check(SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1, "certificate loads");
    Check(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert) == 1, "CA loads");
  }
};

struct Contexts {
  Identity id;
  ssl::context server{ssl::context::tls_server};
  ssl::context client{ssl::context::tls_client};
  Contexts() {
    Check(freshsync::ApplyServerTlsPolicy(*server.native_handle()), "hubd's TLS policy applies");
    id.Install(server.native_handle());
    SSL_CTX_set_verify(server.native_handle(), SSL_VERIFY_PEER, nullptr);  // as hubd: asked, not required
    SSL_CTX_set_mode(server.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    id.Install(client.native_handle());
    SSL_CTX_set_verify(client.native_handle(), SSL_VERIFY_PEER, nullptr);
  }
};

Contexts& Ctx() {
  static Contexts* c = new Contexts();  // never destroyed: libFuzzer exits without unwinding
  return *c;
}

// Chunk sizes from a small linear congruential generator: the fuzzer steers them by one byte.
class Chunker {
 public:
  explicit Chunker(uint8_t seed) : state_(seed * 2654435761u + 1), small_(seed & 1) {}
  size_t Next() {
    state_ = state_ * 1103515245u + 12345u;
    const uint32_t r = state_ >> 8;
    return small_ ? 1 + r % 7 : 1 + r % 4096;
  }

 private:
  uint32_t state_;
  bool small_;
};

// Runs the io_context until `done`, at most 5 s: an operation that never ends is a bug (a
// peer that has half-closed cannot keep a handshake or a read waiting).
void RunUntil(net::io_context& io, const bool& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done) {
    Check(std::chrono::steady_clock::now() < deadline, "the operation completes");
    io.restart();
    io.run_for(std::chrono::milliseconds(50));
  }
}

// The peer's socket: blocking writes in chunks (the socket buffer outgrows the 64 kB inputs).
void SendChunked(int fd, const uint8_t* data, size_t size, Chunker& chunks) {
  while (size > 0) {
    const size_t n = std::min(size, chunks.Next());
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w <= 0) return;  // the server has closed: it gave up, which is allowed
    data += w;
    size -= static_cast<size_t>(w);
  }
}

// A real TLS client on the peer's socket, non-blocking, stepped between runs of the server's
// io_context (one thread).
bool ClientHandshake(net::io_context& io, TlsStream& server, SSL* client, bool& server_done, error_code& server_ec) {
  server.async_handshake([&](error_code ec) {
    server_ec = ec;
    server_done = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool client_done = false;
  while (!(client_done && server_done)) {
    Check(std::chrono::steady_clock::now() < deadline, "a real handshake completes");
    if (!client_done) {
      const int r = SSL_do_handshake(client);
      if (r == 1) client_done = true;
      else {
        const int e = SSL_get_error(client, r);
        Check(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE, "the real client's handshake only waits");
      }
    }
    io.restart();
    io.poll();
  }
  return !server_ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  Contexts& ctx = Ctx();
  const bool after_handshake = data[0] & 1;
  Chunker chunks(data[1]);
  data += 2;
  size -= 2;

  int fds[2];
  Check(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
  const int peer = fds[1];
  net::io_context io;
  net::ip::tcp::socket sock(io);
  sock.assign(net::ip::tcp::v4(), fds[0]);  // a stream socket is all TlsStream reads and writes
  auto server = std::make_unique<TlsStream>(std::move(sock), ctx.server);

  if (!after_handshake) {
    SendChunked(peer, data, size, chunks);
    ::shutdown(peer, SHUT_WR);
    bool done = false;
    server->async_handshake([&](error_code) { done = true; });
    RunUntil(io, done);
    Check(server->BufferedCapacity() == 0, "no buffer held after the handshake ends");
  } else {
    SSL* client = SSL_new(ctx.client.native_handle());
    SSL_set_fd(client, peer);
    SSL_set_connect_state(client);
    Check(::fcntl(peer, F_SETFL, O_NONBLOCK) == 0, "non-blocking peer");
    bool server_done = false;
    error_code server_ec;
    Check(ClientHandshake(io, *server, client, server_done, server_ec), "the real mutual-TLS handshake succeeds");
    Check(server->BufferedCapacity() == 0, "no buffer held after the handshake");
    Check(SSL_get0_peer_certificate(server->native_handle()) != nullptr, "the client's certificate reached the server");

    const size_t want = size >= 2 ? std::min<size_t>(size - 2, (size_t{data[0]} << 8) | data[1]) : 0;
    const uint8_t* plain = data + (size >= 2 ? 2 : size);
    const uint8_t* garbage = plain + want;
    const size_t garbage_size = size - (garbage - data);
    ::fcntl(peer, F_SETFL, 0);  // blocking again: the server reads on this thread afterwards
    for (size_t off = 0; off < want;) {
      const size_t n = std::min(want - off, chunks.Next());
      size_t written = 0;
      Check(SSL_write_ex(client, plain + off, n, &written) == 1 && written == n, "the client writes");
      off += n;
    }
    std::vector<uint8_t> got;
    std::vector<uint8_t> buf(chunks.Next());
    while (got.size() < want) {
      bool done = false;
      error_code ec;
      size_t n = 0;
      server->async_read_some(net::buffer(buf), [&](error_code e, size_t m) {
        ec = e;
        n = m;
        done = true;
      });
      RunUntil(io, done);
      Check(!ec, "application data is read");
      Check(server->BufferedCapacity() == 0 || got.size() + n < want, "no buffer held once all is read");
      got.insert(got.end(), buf.begin(), buf.begin() + n);
    }
    Check(got.size() == want && (want == 0 || std::memcmp(got.data(), plain, want) == 0), "the server reads back the bytes sent");

    SendChunked(peer, garbage, garbage_size, chunks);
    ::shutdown(peer, SHUT_WR);
    // Whatever the raw bytes were, the read ends: an error, or bytes of a record the fuzzer
    // forged correctly (it cannot: no key), then eof. Reads until an error.
    for (int reads = 0;; ++reads) {
      bool done = false;
      error_code ec;
      server->async_read_some(net::buffer(buf), [&](error_code e, size_t) {
        ec = e;
        done = true;
      });
      RunUntil(io, done);
      if (ec) break;
      Check(reads < 1000, "a broken stream ends in an error");
    }
    Check(server->BufferedCapacity() == 0, "no buffer held after a failed read");
    SSL_free(client);
  }
  server.reset();
  ::close(peer);
  ERR_clear_error();
  return 0;
}
