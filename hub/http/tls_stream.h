// hub/http: TlsStream, the server side of TLS over a beast::tcp_stream, for hubd's
// connections. It replaces boost::asio::ssl::stream because of what that one holds per
// connection for its whole life: two 17 kB record vectors (asio's stream_core) and a BIO pair
// with two 17 kB buffers, about 70 kB of hubd's ~100 kB per kept-alive connection
// (docs/benchmarks.md, "Hub connections"). Here OpenSSL talks to a BIO of our own whose bytes
// live in two vectors that exist only while an operation needs them: the ciphertext read from
// the socket (freed once OpenSSL has taken all of it) and the ciphertext to send (freed once
// sent). With SSL_MODE_RELEASE_BUFFERS an idle connection holds the SSL object and nothing
// else.
//
// What a caller sees is asio's ssl::stream: async_handshake (server only), async_read_some,
// async_write_some, async_shutdown, native_handle(), next_layer(); Beast's http::async_read /
// async_write and get_lowest_layer work on it unchanged, and the deadlines stay the
// tcp_stream's (expires_after on the lowest layer; a deadline that passes completes the
// operation with beast::error::timeout). Errors as asio gives them: an OpenSSL failure in
// asio's ssl category, close_notify from the peer as net::error::eof, a socket that ends
// without it as ssl::error::stream_truncated.
//
// One operation at a time: hub/http/server.cc never reads and writes a connection at once.
// async_shutdown sends close_notify and does not wait for the peer's (the server closes next).
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace freshsync::hub::http {

class TlsStream {
 public:
  using next_layer_type = boost::beast::tcp_stream;
  using executor_type = next_layer_type::executor_type;
  using error_code = boost::system::error_code;

  // The SSL object is made from `ctx` in accept (server) state.
  TlsStream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& ctx);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  executor_type get_executor() noexcept { return next_->get_executor(); }
  next_layer_type& next_layer() noexcept { return *next_; }
  SSL* native_handle() noexcept { return ssl_; }

  // Moves the connection to `executor` (another io_context's strand): the socket is taken
  // out of its io_context and wrapped anew; the TLS state stays. With no operation pending
  // (none may be), from the current executor. hub/http/server.cc does the handshakes on
  // io_contexts of their own and then moves each connection to the one that serves requests.
  // On failure the connection is closed and `ec` says why.
  void Rebind(const executor_type& executor, error_code& ec);

  // Bytes held now outside OpenSSL (the two vectors' capacity), for tests.
  size_t BufferedCapacity() const { return in_.capacity() + out_.capacity(); }

  template <class Token>
  auto async_handshake(Token&& token) {
    return boost::asio::async_compose<Token, void(error_code)>(
        Op<HandshakeStep, false>{*this, HandshakeStep{}}, token, *next_);
  }

  template <class Token>
  auto async_shutdown(Token&& token) {
    return boost::asio::async_compose<Token, void(error_code)>(Op<ShutdownStep, false>{*this, ShutdownStep{}},
                                                               token, *next_);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(error_code, size_t)>(
        Op<ReadStep<MutableBuffers>, true>{*this, ReadStep<MutableBuffers>{buffers}}, token, *next_);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(error_code, size_t)>(
        Op<WriteStep<ConstBuffers>, true>{*this, WriteStep<ConstBuffers>{buffers}}, token, *next_);
  }

 private:
  // One TLS record's worth: what a read from the socket asks for, and the most a write_some
  // hands OpenSSL at once (a larger write is the caller's loop, e.g. Beast's async_write).
  static constexpr size_t kRecord = 17 * 1024;
  // What a read from the socket asks for while the peer sends little: a slow client's
  // one-byte record is ~25 bytes, and a 17 kB buffer allocated (and zero-filled) for it, then
  // freed, was a large share of hubd's CPU beside 1,000 slowloris connections (glibc serves
  // 17 kB chunks from its bins, 500 bytes from the per-thread cache). A read that fills it
  // makes the next ones kRecord, until a read comes back short again.
  static constexpr size_t kSmallRead = 512;

  // The result of one call into OpenSSL.
  struct Step {
    int ret = 0;    // SSL_* return value (> 0 done)
    size_t n = 0;   // bytes read or written
  };
  struct HandshakeStep {
    Step operator()(SSL* ssl) { return {SSL_do_handshake(ssl), 0}; }
  };
  struct ShutdownStep {
    // 0 (close_notify sent, the peer's not yet received) is done too: we do not wait for it.
    Step operator()(SSL* ssl) {
      const int r = SSL_shutdown(ssl);
      return {r >= 0 ? 1 : r, 0};
    }
  };
  template <class Buffers>
  struct ReadStep {
    Buffers buffers;
    Step operator()(SSL* ssl) {
      for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
        const boost::asio::mutable_buffer b = *it;
        if (b.size() == 0) continue;
        size_t n = 0;
        const int r = SSL_read_ex(ssl, b.data(), b.size(), &n);
        return {r, n};
      }
      return {1, 0};  // nothing asked for
    }
  };
  template <class Buffers>
  struct WriteStep {
    Buffers buffers;
    Step operator()(SSL* ssl) {
      // Gathered into one record: Beast hands a head over as several small buffers.
      std::array<unsigned char, kRecord - 1024> chunk;
      const size_t len = boost::asio::buffer_copy(boost::asio::buffer(chunk), buffers);
      if (len == 0) return {1, 0};
      size_t n = 0;
      const int r = SSL_write_ex(ssl, chunk.data(), len, &n);
      return {r, n};
    }
  };

  // What the stream does next after a call into OpenSSL.
  enum class Next { kDone, kFlush, kRead, kError };
  Next After(int ret, error_code& ec);
  // The vectors are let go once empty, so an idle connection holds neither.
  void ReleaseIdleBuffers();
  void DropBuffers() {
    in_begin_ = in_end_ = 0;
    out_.clear();
    ReleaseIdleBuffers();
  }
  boost::asio::mutable_buffer PrepareInput();
  void CommitInput(size_t n) {
    in_end_ += n;
    read_full_ = n == read_asked_;
  }
  void ConsumedOutput() {
    out_.clear();
    ReleaseIdleBuffers();
  }

  // The composed operation: call OpenSSL; send what it wrote; read what it wants; again.
  // `kSized`: the completion carries the byte count (read/write_some) or not.
  template <class StepFn, bool kSized>
  struct Op {
    enum class Pending { kNone, kWrite, kRead, kPosted };

    TlsStream& s;
    StepFn step;
    Step result{};
    error_code failure{};
    bool finished = false;  // the result is in; sending what is left before completing
    Pending pending = Pending::kNone;  // the socket operation this call completes
    bool did_io = false;  // a completion in the initiating call is posted, never made inline

    template <class Self>
    void operator()(Self& self, error_code ec = {}, size_t n = 0) {
      const Pending from = pending;
      pending = Pending::kNone;
      if (from == Pending::kPosted) return Complete(self, failure);
      if (from == Pending::kWrite) {
        s.ConsumedOutput();
        if (ec) return Complete(self, failure ? failure : ec);
        if (finished) return Complete(self, failure);
      } else if (from == Pending::kRead) {
        if (ec == boost::asio::error::eof) ec = boost::asio::ssl::error::stream_truncated;
        if (ec) return Complete(self, ec);
        s.CommitInput(n);
      }
      ERR_clear_error();
      result = step(s.ssl_);
      error_code err;
      switch (s.After(result.ret, err)) {
        case Next::kDone:
          finished = true;
          if (!s.out_.empty()) return Flush(self);
          return Complete(self, {});
        case Next::kFlush:
          return Flush(self);
        case Next::kRead:
          if (!s.out_.empty()) return Flush(self);  // what OpenSSL wrote goes first, then we retry
          pending = Pending::kRead;
          did_io = true;
          return s.next_->async_read_some(s.PrepareInput(), std::move(self));
        case Next::kError:
          // The alert OpenSSL wrote, if any, reaches the peer before we give up.
          failure = err;
          finished = true;
          if (!s.out_.empty()) return Flush(self);
          return Complete(self, err);
      }
    }

    template <class Self>
    void Flush(Self& self) {
      pending = Pending::kWrite;
      did_io = true;
      boost::asio::async_write(*s.next_, boost::asio::buffer(s.out_), std::move(self));
    }

    template <class Self>
    void Complete(Self& self, error_code ec) {
      if (!did_io) {
        did_io = true;
        failure = ec;
        pending = Pending::kPosted;
        return boost::asio::post(s.next_->get_executor(), std::move(self));
      }
      if (ec) s.DropBuffers();  // a failed stream is dead: what OpenSSL left unread goes too
      else s.ReleaseIdleBuffers();
      if constexpr (kSized) self.complete(ec, ec ? 0 : result.n);
      else self.complete(ec);
    }
  };

  static int BioWrite(BIO* bio, const char* data, size_t len, size_t* written);
  static int BioRead(BIO* bio, char* data, size_t len, size_t* read);
  static long BioCtrl(BIO* bio, int cmd, long num, void* ptr);
  static const BIO_METHOD* BioMethod();

  std::optional<next_layer_type> next_;  // always engaged; optional so that Rebind can replace it
  SSL* ssl_ = nullptr;
  std::vector<unsigned char> in_;  // ciphertext from the socket, [in_begin_, in_end_) not yet taken
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  size_t read_asked_ = 0;   // the size of the last read from the socket
  bool read_full_ = false;  // it came back full: more is likely waiting, read kRecord
  std::vector<unsigned char> out_;  // ciphertext OpenSSL wrote, to send
};

}  // namespace freshsync::hub::http
