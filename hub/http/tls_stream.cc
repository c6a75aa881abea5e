#include "hub/http/tls_stream.h"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cstring>

#include <unistd.h>

namespace freshsync::hub::http {

namespace net = boost::asio;

TlsStream::TlsStream(net::ip::tcp::socket&& socket, net::ssl::context& ctx) {
  next_.emplace(std::move(socket));
  ssl_ = SSL_new(ctx.native_handle());
  if (!ssl_) throw boost::system::system_error(error_code(static_cast<int>(ERR_get_error()), net::error::get_ssl_category()), "SSL_new");
  // ACCEPT_MOVING_WRITE_BUFFER: a retried SSL_write gets its bytes from a new copy (WriteStep).
  // RELEASE_BUFFERS: OpenSSL's own record buffers go while the connection is idle.
  SSL_set_mode(ssl_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  BIO* bio = BIO_new(BioMethod());
  if (!bio) {
    SSL_free(ssl_);
    throw boost::system::system_error(error_code(static_cast<int>(ERR_get_error()), net::error::get_ssl_category()), "BIO_new");
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // the SSL owns it
  SSL_set_accept_state(ssl_);
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

void TlsStream::Rebind(const executor_type& executor, error_code& ec) {
  auto& old = next_->socket();
  const auto protocol = old.local_endpoint(ec).protocol();
  if (ec) return;  // the peer is gone already: the caller closes
  const auto fd = old.release(ec);  // deregisters it from the old io_context's reactor
  if (ec) return;
  net::ip::tcp::socket moved(executor);
  moved.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  next_.emplace(std::move(moved));  // the old tcp_stream (its timer) goes; nothing of it is pending
}

TlsStream::Next TlsStream::After(int ret, error_code& ec) {
  if (ret > 0) return Next::kDone;
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      return Next::kRead;
    case SSL_ERROR_WANT_WRITE:  // our BIO takes every write; kept for completeness
      return Next::kFlush;
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
      ec = net::error::eof;
      return Next::kError;
    case SSL_ERROR_SSL:
    case SSL_ERROR_SYSCALL: {
      const unsigned long e = ERR_get_error();
      ec = e ? error_code(static_cast<int>(e), net::error::get_ssl_category()) : error_code(net::ssl::error::stream_truncated);
      ERR_clear_error();
      return Next::kError;
    }
    default:
      ec = net::error::operation_not_supported;
      return Next::kError;
  }
}

void TlsStream::ReleaseIdleBuffers() {
  if (in_begin_ == in_end_) {
    std::vector<unsigned char>().swap(in_);
    in_begin_ = in_end_ = 0;
  }
  if (out_.empty()) std::vector<unsigned char>().swap(out_);
}

net::mutable_buffer TlsStream::PrepareInput() {
  if (in_begin_ > 0) {  // keep what OpenSSL has not taken yet at the front
    std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  const size_t want = read_full_ ? kRecord : kSmallRead;
  if (in_.size() < in_end_ + want) in_.resize(in_end_ + want);
  read_asked_ = in_.size() - in_end_;
  return net::buffer(in_.data() + in_end_, read_asked_);
}

int TlsStream::BioWrite(BIO* bio, const char* data, size_t len, size_t* written) {
  auto* s = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  s->out_.insert(s->out_.end(), reinterpret_cast<const unsigned char*>(data), reinterpret_cast<const unsigned char*>(data) + len);
  *written = len;
  return 1;
}

int TlsStream::BioRead(BIO* bio, char* data, size_t len, size_t* read) {
  auto* s = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const size_t n = std::min(len, s->in_end_ - s->in_begin_);
  if (n == 0) {
    BIO_set_retry_read(bio);
    *read = 0;
    return 0;
  }
  std::memcpy(data, s->in_.data() + s->in_begin_, n);
  s->in_begin_ += n;
  *read = n;
  return 1;
}

long TlsStream::BioCtrl(BIO* bio, int cmd, long, void*) {
  auto* s = static_cast<TlsStream*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // the operation sends out_ when OpenSSL returns
    case BIO_CTRL_PENDING:
      return s ? static_cast<long>(s->in_end_ - s->in_begin_) : 0;
    case BIO_CTRL_WPENDING:
      return s ? static_cast<long>(s->out_.size()) : 0;
    default:
      return 0;
  }
}

const BIO_METHOD* TlsStream::BioMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "freshsync-hub-tls");
    BIO_meth_set_write_ex(m, &TlsStream::BioWrite);
    BIO_meth_set_read_ex(m, &TlsStream::BioRead);
    BIO_meth_set_ctrl(m, &TlsStream::BioCtrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    BIO_meth_set_destroy(m, [](BIO*) { return 1; });
    return m;
  }();
  return method;
}

}  // namespace freshsync::hub::http
