#include "proxy/http2/session_io.h"

namespace trellis::proxy::http2 {

bool connection_specific(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" || lower_name == "proxy-connection" ||
         lower_name == "transfer-encoding" || lower_name == "upgrade" || lower_name == "te" ||
         lower_name == "trailer";
}

void FieldBlock::add(std::string_view name, std::string_view value, bool lower) {
  size_t at = names_.size();
  names_.append(name);
  if (lower) {
    for (size_t i = at; i < names_.size(); ++i) {
      char& c = names_[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
  }
  spans_.push_back({at, name.size(), value});
}

void FieldBlock::add_fields(const http::HeaderList& fields, bool trailers) {
  for (const http::Header& h : fields) {
    if (h.name.empty() || h.name[0] == ':') continue;
    size_t at = names_.size();
    add(h.name, h.value);
    const std::string_view name = std::string_view(names_).substr(at);
    if (connection_specific(name) || (trailers && http::barred_from_trailers(name))) {
      names_.resize(at);
      spans_.pop_back();
    } else if (trailers) {
      spans_.back().value_at = values_.size();
      values_.append(h.value);
    }
  }
}

const std::vector<nghttp2_nv>& FieldBlock::nv() {
  nv_.clear();
  for (const Span& s : spans_) {
    std::string_view value =
        s.value_at == kNotCopied ? s.value : std::string_view(values_).substr(s.value_at, s.value.size());
    nv_.push_back(field(std::string_view(names_).substr(s.at, s.size), value));
  }
  return nv_;
}

nghttp2_session* open_session(bool server, void* user, std::span<const nghttp2_settings_entry> settings,
                              int32_t connection_window,
                              void (*configure)(nghttp2_session_callbacks*, nghttp2_option*)) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_option* option = nullptr;
  nghttp2_session* session = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) == 0 && nghttp2_option_new(&option) == 0) {
    nghttp2_option_set_no_auto_window_update(option, 1);
    configure(callbacks, option);
    int rv = server ? nghttp2_session_server_new2(&session, callbacks, user, option)
                    : nghttp2_session_client_new2(&session, callbacks, user, option);
    if (rv != 0) session = nullptr;
  }
  if (option != nullptr) nghttp2_option_del(option);
  if (callbacks != nullptr) nghttp2_session_callbacks_del(callbacks);
  if (session != nullptr &&
      (nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings.data(), settings.size()) != 0 ||
       nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, connection_window) != 0)) {
    nghttp2_session_del(session);
    session = nullptr;
  }
  return session;
}

int64_t send_frames(nghttp2_session* session, net::Transport& transport, net::Buffer& output,
                    size_t high_watermark) {
  int64_t sent = 0;
  for (;;) {
    // nghttp2 hands out one frame at a time: gathered, they make one
    // syscall per round instead of one per frame.
    bool drained = false;
    while (transport.pending_output() + output.size() < high_watermark) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session, &data);
      if (n < 0) return -1;
      if (n == 0) {
        drained = true;
        break;
      }
      output.append(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
    }
    if (output.empty()) return sent;
    sent += static_cast<int64_t>(output.size());
    if (!transport.write(output)) return -1;
    // A round cut at the watermark that the socket took whole: no writable
    // event will come to send the rest, so it goes now. Frames left behind
    // a full socket wait for that event.
    if (drained || transport.pending_output() > 0) return sent;
  }
}

}  // namespace trellis::proxy::http2
