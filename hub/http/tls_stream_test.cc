// TlsStream against asio's own TLS client: a mutual-TLS handshake, a request and an answer
// larger than a record through Beast, no buffer held once an operation is over (what the
// stream is for), and the two ways a peer ends (close_notify: eof; a bare TCP close:
// stream_truncated).
#include "hub/http/tls_stream.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "tests/support/harness.h"

namespace freshsync::hub::http {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bh = boost::beast::http;
using tcp = net::ip::tcp;

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pki_.Init());
    site_ = pki_.Client("site-a");
    server_ctx_.use_certificate_chain_file(pki_.server().cert);
    server_ctx_.use_private_key_file(pki_.server().key, ssl::context::pem);
    server_ctx_.load_verify_file(pki_.ca_cert());
    server_ctx_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    SSL_CTX_set_mode(server_ctx_.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    acceptor_.open(tcp::v4());
    acceptor_.bind({net::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
  }

  // A blocking client on its own thread: handshake, `request`, read the answer; then
  // close_notify (`clean`) or a bare close.
  std::thread Client(std::string request, bool clean, std::string* answer) {
    return std::thread([this, request, clean, answer] {
      net::io_context io;
      ssl::context ctx(ssl::context::tls_client);
      ctx.load_verify_file(pki_.ca_cert());
      ctx.use_certificate_chain_file(site_.cert);
      ctx.use_private_key_file(site_.key, ssl::context::pem);
      ssl::stream<tcp::socket> s(io, ctx);
      s.set_verify_mode(ssl::verify_peer);
      s.next_layer().connect({net::ip::make_address("127.0.0.1"), acceptor_.local_endpoint().port()});
      s.handshake(ssl::stream_base::client);
      net::write(s, net::buffer(request));
      beast::flat_buffer buf;
      bh::response<bh::string_body> res;
      beast::error_code ec;
      bh::read(s, buf, res, ec);
      if (!ec) *answer = res.body();
      if (clean) s.shutdown(ec);
      s.next_layer().close(ec);
    });
  }

  freshsync::testing::TempDir dir_;
  freshsync::testing::TestPki pki_{dir_.path()};
  freshsync::testing::TestPki::Files site_;
  net::io_context io_;
  ssl::context server_ctx_{ssl::context::tls_server};
  tcp::acceptor acceptor_{io_};
};

// Serves one request with a `body_size` answer, then reads until the client ends; returns
// how the last read ended.
struct OneExchange {
  TlsStream stream;
  size_t body_size;
  beast::flat_buffer buf;
  bh::request<bh::string_body> req;
  bh::response<bh::string_body> res;
  std::string peer_cn;
  size_t held_after_handshake = 999;
  size_t held_after_answer = 999;
  std::optional<beast::error_code> end;
  char byte = 0;

  OneExchange(tcp::socket&& s, ssl::context& ctx, size_t n) : stream(std::move(s), ctx), body_size(n) {}

  void Run() {
    stream.async_handshake([this](beast::error_code ec) {
      ASSERT_FALSE(ec) << ec.message();
      held_after_handshake = stream.BufferedCapacity();
      if (X509* cert = SSL_get1_peer_certificate(stream.native_handle())) {
        char cn[64] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        peer_cn = cn;
        X509_free(cert);
      }
      bh::async_read(stream, buf, req, [this](beast::error_code rec, size_t) {
        ASSERT_FALSE(rec) << rec.message();
        res.result(bh::status::ok);
        res.body() = std::string(body_size, 'x');
        res.prepare_payload();
        bh::async_write(stream, res, [this](beast::error_code wec, size_t) {
          ASSERT_FALSE(wec) << wec.message();
          held_after_answer = stream.BufferedCapacity();
          stream.async_read_some(net::buffer(&byte, 1), [this](beast::error_code eec, size_t) {
            end = eec;
            beast::error_code ignored;
            stream.next_layer().socket().close(ignored);  // a client waiting for our close_notify gets EOF
          });
        });
      });
    });
  }
};

TEST_F(TlsStreamTest, ServesARequestHoldsNoBufferBetweenOperationsAndSeesCloseNotifyAsEof) {
  std::string answer;
  std::thread client = Client("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", true, &answer);
  std::unique_ptr<OneExchange> ex;
  acceptor_.async_accept([&](beast::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    ex = std::make_unique<OneExchange>(std::move(s), server_ctx_, 100000);  // six records
    ex->Run();
  });
  io_.run();
  client.join();
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(ex->peer_cn, "site-a");
  EXPECT_EQ(ex->req.target(), "/x");
  EXPECT_EQ(answer.size(), 100000u);
  EXPECT_EQ(ex->held_after_handshake, 0u);
  EXPECT_EQ(ex->held_after_answer, 0u);
  ASSERT_TRUE(ex->end.has_value());
  EXPECT_EQ(*ex->end, net::error::eof);
  EXPECT_EQ(ex->stream.BufferedCapacity(), 0u);
}

TEST_F(TlsStreamTest, APeerThatClosesWithoutCloseNotifyIsATruncatedStream) {
  std::string answer;
  std::thread client = Client("GET /y HTTP/1.1\r\nHost: h\r\n\r\n", false, &answer);
  std::unique_ptr<OneExchange> ex;
  acceptor_.async_accept([&](beast::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    ex = std::make_unique<OneExchange>(std::move(s), server_ctx_, 10);
    ex->Run();
  });
  io_.run();
  client.join();
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(answer, std::string(10, 'x'));
  ASSERT_TRUE(ex->end.has_value());
  EXPECT_EQ(*ex->end, ssl::error::stream_truncated);
}

// What hub/http/server.cc does with every connection: the handshake on one io_context, then
// Rebind to a strand of another, where the request is read and answered.
TEST_F(TlsStreamTest, RebindMovesAHandshakenConnectionToAnotherIoContext) {
  std::string answer;
  std::thread client = Client("GET /moved HTTP/1.1\r\nHost: h\r\n\r\n", true, &answer);
  net::io_context requests;
  std::unique_ptr<TlsStream> stream;
  beast::error_code rebind_ec = net::error::fault;
  acceptor_.async_accept([&](beast::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    stream = std::make_unique<TlsStream>(std::move(s), server_ctx_);
    stream->async_handshake([&](beast::error_code hec) {
      ASSERT_FALSE(hec) << hec.message();
      stream->Rebind(net::make_strand(requests), rebind_ec);
    });
  });
  io_.run();  // returns once the handshake is done: the connection has left io_
  ASSERT_FALSE(rebind_ec) << rebind_ec.message();
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(&net::query(stream->get_executor(), net::execution::context), &static_cast<net::execution_context&>(requests));
  beast::flat_buffer buf;
  bh::request<bh::string_body> req;
  bh::response<bh::string_body> res;
  bool answered = false;
  bh::async_read(*stream, buf, req, [&](beast::error_code rec, size_t) {
    ASSERT_FALSE(rec) << rec.message();
    res.result(bh::status::ok);
    res.body() = "moved";
    res.prepare_payload();
    bh::async_write(*stream, res, [&](beast::error_code wec, size_t) {
      ASSERT_FALSE(wec) << wec.message();
      answered = true;
      beast::error_code ignored;
      stream->next_layer().socket().close(ignored);
    });
  });
  requests.run();
  client.join();
  EXPECT_TRUE(answered);
  EXPECT_EQ(req.target(), "/moved");
  EXPECT_EQ(answer, "moved");
}

}  // namespace
}  // namespace freshsync::hub::http
