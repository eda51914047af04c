// A Store that times every call of the one it wraps, for
// trellis_control_store_call_duration_seconds.
#pragma once

#include <chrono>
#include <memory>
#include <type_traits>

#include "control/metrics.h"
#include "control/store.h"

namespace trellis::control {

class TimedStore final : public Store {
 public:
  TimedStore(std::unique_ptr<Store> inner, ControlMetrics& metrics)
      : inner_(std::move(inner)), metrics_(metrics) {}

  Result<PutResult> put(const Resource& resource) override {
    return timed(StoreCall::kPut, [&] { return inner_->put(resource); });
  }
  std::optional<Resource> get(const ResourceKey& key) override {
    return timed(StoreCall::kGet, [&] { return inner_->get(key); });
  }
  std::vector<Resource> list(const std::string& kind, const std::string& namespace_) override {
    return timed(StoreCall::kList, [&] { return inner_->list(kind, namespace_); });
  }
  Result<bool> remove(const ResourceKey& key, uint64_t expected_version) override {
    return timed(StoreCall::kRemove, [&] { return inner_->remove(key, expected_version); });
  }
  Result<bool> upsert_instance(const Instance& instance) override {
    return timed(StoreCall::kUpsertInstance, [&] { return inner_->upsert_instance(instance); });
  }
  bool remove_instance(const std::string& id) override {
    return timed(StoreCall::kRemoveInstance, [&] { return inner_->remove_instance(id); });
  }
  std::vector<Instance> instances() override {
    return timed(StoreCall::kInstances, [&] { return inner_->instances(); });
  }
  Result<bool> touch_instance(const std::string& id, int64_t heartbeat_ms) override {
    return timed(StoreCall::kTouchInstance, [&] { return inner_->touch_instance(id, heartbeat_ms); });
  }
  Result<bool> insert_token(const TokenRecord& token) override {
    return timed(StoreCall::kInsertToken, [&] { return inner_->insert_token(token); });
  }
  std::optional<TokenRecord> get_token(const std::string& id) override {
    return timed(StoreCall::kGetToken, [&] { return inner_->get_token(id); });
  }
  std::vector<TokenRecord> tokens() override {
    return timed(StoreCall::kTokens, [&] { return inner_->tokens(); });
  }
  Result<bool> revoke_token(const std::string& id, int64_t revoked_ms) override {
    return timed(StoreCall::kRevokeToken, [&] { return inner_->revoke_token(id, revoked_ms); });
  }
  uint64_t revision() override {
    return timed(StoreCall::kRevision, [&] { return inner_->revision(); });
  }

 private:
  template <class F>
  std::invoke_result_t<F> timed(StoreCall call, F f) {
    auto start = std::chrono::steady_clock::now();
    auto result = f();
    metrics_.store_call(call, std::chrono::steady_clock::now() - start);
    return result;
  }

  std::unique_ptr<Store> inner_;
  ControlMetrics& metrics_;
};

}  // namespace trellis::control
