// A minimal HTTP/1.0 GET over loopback for tests: scraping /metrics and querying Prometheus's
// HTTP API without pulling an HTTP client library into the build.
#ifndef MUSC_TESTS_SERVER_HTTP_GET_H_
#define MUSC_TESTS_SERVER_HTTP_GET_H_

#include <string>

namespace musc::testing {

struct HttpResponse {
  int status = 0;  // 0 when the connection failed or the reply was not HTTP.
  std::string body;
};

// `path_and_query` must already be URL-encoded (see UrlEncode).
HttpResponse HttpGet(int port, const std::string& path_and_query);
std::string UrlEncode(const std::string& text);

}  // namespace musc::testing

#endif  // MUSC_TESTS_SERVER_HTTP_GET_H_
