// The parts of merge_dynamic_config that turn one trellis.v1 message into the
// config model, checked by the rules the bootstrap loader applies
// (proxy/config/checks.h): merge_clusters.cc and merge_routes.cc.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "proxy/config/checks.h"
#include "proxy/config/config.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::proxy::control_merge {

// "path[index]": the path of a list item.
inline std::string item(const std::string& path, int index) {
  return path + "[" + std::to_string(index) + "]";
}

// Where errors of one update go, each with the field path of what the
// control plane sent.
class Errors {
 public:
  explicit Errors(std::vector<ConfigError>& out) : out_(out) {}
  void add(std::string path, std::string message);
  // Reports `problem` at `path`, if any; true when there is none.
  bool check(const std::string& path, const Problem& problem);

 private:
  std::vector<ConfigError>& out_;
};

// Cluster names as routes refer to them: the first cluster of each name.
using ClusterIndex = std::map<std::string, size_t>;

// `path` is the cluster's own, e.g. "clusters[reviews.default]".
void translate_cluster(const v1::Cluster& in, const std::string& path, Errors& errors, ClusterConfig& out);

// `path` is the route's own, e.g.
// "listeners[outbound].virtual_hosts[reviews.default].routes[2]".
void translate_route(const v1::Route& in, const std::string& path, const ClusterIndex& clusters,
                     Errors& errors, RouteConfig& out);

}  // namespace trellis::proxy::control_merge
