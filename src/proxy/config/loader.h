// The bootstrap loader's sections, one file per responsibility: config.cc
// reads the top level, listeners and virtual hosts; config_clusters.cc the
// clusters; config_routes.cc the routes.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/reader.h"

namespace trellis::proxy::config_yaml {

// Cluster names as routes and tcp listeners refer to them.
class ClusterIndex {
 public:
  // False when the clusters section itself was unreadable: every reference
  // would then be unknown, and one error says it all.
  bool known = true;
  std::unordered_map<std::string, size_t> by_name;  // first cluster of each name

  // Sets `index` to the cluster named `name`, or reports that there is none.
  void resolve(Reader& reader, const Located& at, const std::string& name, size_t& index) const;
};

void load_clusters(Reader& reader, const Located& at, std::vector<ClusterConfig>& clusters,
                   ClusterIndex& index);

void load_routes(Reader& reader, const Located& at, const ClusterIndex& clusters,
                 std::vector<RouteConfig>& routes);

void load_authorization(Reader& reader, const Located& at, policy::AuthorizationConfig& out);

}  // namespace trellis::proxy::config_yaml
