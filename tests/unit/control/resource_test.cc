#include "control/resource.h"

#include <gtest/gtest.h>

#include "resource_test_helpers.h"

#include <string>
#include <vector>

namespace trellis::control {
namespace {

Json route_doc() {
  return Json::parse(R"({
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "reviews", "namespace": "bookinfo", "labels": {"app": "reviews"}},
    "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}]}
  })");
}

Json mesh_config_doc() {
  return Json::parse(R"({
    "apiVersion": "trellis.dev/v1alpha1",
    "kind": "MeshConfig",
    "metadata": {"name": "default"},
    "spec": {"mtls": {"mode": "PERMISSIVE"}}
  })");
}

using namespace ::trellis::control::testing;  // NOLINT: test helpers

TEST(KnownKinds, ListsEveryKindWithItsApiVersionAndScope) {
  const std::vector<KindInfo>& kinds = known_kinds();
  ASSERT_EQ(kinds.size(), 8u);
  struct Expected {
    std::string kind, api_version, plural;
    bool namespaced;
  };
  std::vector<Expected> expected = {
      {"HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", true},
      {"GRPCRoute", "gateway.networking.k8s.io/v1", "grpcroutes", true},
      {"DestinationPolicy", "trellis.dev/v1alpha1", "destinationpolicies", true},
      {"RateLimitPolicy", "trellis.dev/v1alpha1", "ratelimitpolicies", true},
      {"AuthorizationPolicy", "trellis.dev/v1alpha1", "authorizationpolicies", true},
      {"MeshConfig", "trellis.dev/v1alpha1", "meshconfigs", false},
      {"FaultInjection", "trellis.dev/v1alpha1", "faultinjections", true},
      {"ReferenceGrant", "gateway.networking.k8s.io/v1", "referencegrants", true},
  };
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(kinds[i].kind, expected[i].kind);
    EXPECT_EQ(kinds[i].api_version, expected[i].api_version);
    EXPECT_EQ(kinds[i].plural, expected[i].plural);
    EXPECT_EQ(kinds[i].namespaced, expected[i].namespaced);
  }
}

TEST(FindKind, AcceptsKindSingularAndPluralInAnyCase) {
  for (const char* name : {"HTTPRoute", "httproute", "httproutes", "HTTPRoutes"}) {
    const KindInfo* info = find_kind(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_STREQ(info->kind, "HTTPRoute");
  }
  ASSERT_NE(find_kind("destinationpolicies"), nullptr);
  EXPECT_STREQ(find_kind("destinationpolicies")->kind, "DestinationPolicy");
  EXPECT_STREQ(find_kind("meshconfig")->kind, "MeshConfig");
  EXPECT_STREQ(find_kind("faultinjections")->kind, "FaultInjection");
  EXPECT_EQ(find_kind("Gateway"), nullptr);
  EXPECT_EQ(find_kind(""), nullptr);
  EXPECT_EQ(find_kind("httproutess"), nullptr);
}

TEST(ResourceToJson, WritesTheKubernetesDocument) {
  Resource r;
  r.api_version = "trellis.dev/v1alpha1";
  r.kind = "DestinationPolicy";
  r.name = "reviews";
  r.namespace_ = "bookinfo";
  r.labels = {{"app", "reviews"}};
  r.resource_version = 42;
  r.spec = Json::parse(R"({"targetRef": {"kind": "Service", "name": "reviews"}})");
  EXPECT_EQ(r.to_json(), Json::parse(R"({
    "apiVersion": "trellis.dev/v1alpha1",
    "kind": "DestinationPolicy",
    "metadata": {"name": "reviews", "namespace": "bookinfo", "labels": {"app": "reviews"},
                 "resourceVersion": "42"},
    "spec": {"targetRef": {"kind": "Service", "name": "reviews"}}
  })"));
}

TEST(ResourceToJson, LeavesOutEmptyNamespaceLabelsAndUnsetVersion) {
  Resource r;
  r.api_version = "trellis.dev/v1alpha1";
  r.kind = "MeshConfig";
  r.name = "default";
  Json metadata = r.to_json()["metadata"];
  EXPECT_EQ(metadata, Json::parse(R"({"name": "default"})"));
  EXPECT_EQ(r.to_json()["spec"], Json::object());
}

TEST(ParseResource, ReadsAValidDocument) {
  Json doc = with(route_doc(), "/metadata/resourceVersion", "17");
  ParsedResource parsed = parse_resource(doc);
  ASSERT_TRUE(parsed.ok()) << joined(error_lines(doc));
  const Resource& r = parsed.resource;
  EXPECT_EQ(r.api_version, "gateway.networking.k8s.io/v1");
  EXPECT_EQ(r.kind, "HTTPRoute");
  EXPECT_EQ(r.name, "reviews");
  EXPECT_EQ(r.namespace_, "bookinfo");
  EXPECT_EQ(r.labels, (std::map<std::string, std::string>{{"app", "reviews"}}));
  EXPECT_EQ(r.resource_version, 17u);
  EXPECT_EQ(r.spec, doc["spec"]) << "the spec is kept as written, without defaults";
  EXPECT_EQ(r.key(), (ResourceKey{"HTTPRoute", "bookinfo", "reviews"}));
}

TEST(ParseResource, RoundTripsThroughToJson) {
  Json doc = with(route_doc(), "/metadata/resourceVersion", "9");
  ParsedResource first = parse_resource(doc);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.resource.to_json(), doc);
  ParsedResource second = parse_resource(first.resource.to_json());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.resource.to_json(), doc);
}

TEST(ParseResource, NamespaceDefaultsToDefaultForNamespacedKinds) {
  ParsedResource parsed = parse_resource(without(route_doc(), "/metadata/namespace"));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.resource.namespace_, "default");
  ParsedResource mesh = parse_resource(mesh_config_doc());
  ASSERT_TRUE(mesh.ok());
  EXPECT_EQ(mesh.resource.namespace_, "") << "MeshConfig is cluster-scoped";
}

TEST(ParseResource, ResourceVersionIsOptional) {
  ParsedResource parsed = parse_resource(route_doc());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.resource.resource_version, 0u);
}

TEST(ParseResource, RejectsADocumentThatIsNotAMap) {
  EXPECT_ONLY_ERROR(Json::array(), "", "a resource must be a map with apiVersion, kind, metadata and spec");
  EXPECT_ONLY_ERROR(Json("HTTPRoute"), "",
                    "a resource must be a map with apiVersion, kind, metadata and spec");
}

TEST(ParseResource, ReportsEveryMissingTopLevelField) {
  EXPECT_EQ(
      error_lines(Json::object()),
      (std::vector<std::string>{"apiVersion: required field is missing", "kind: required field is missing",
                                "metadata: required field is missing", "spec: required field is missing"}));
}

TEST(ParseResource, UnknownKindSuggestsTheClosestOne) {
  EXPECT_ONLY_ERROR(with(route_doc(), "/kind", "HttpRoute"), "kind",
                    "unknown kind \"HttpRoute\" (did you mean \"HTTPRoute\"?); the kinds are "
                    "HTTPRoute, GRPCRoute, DestinationPolicy, RateLimitPolicy, AuthorizationPolicy, "
                    "MeshConfig, FaultInjection and ReferenceGrant");
  EXPECT_ONLY_ERROR(with(route_doc(), "/kind", "Gateway"), "kind",
                    "unknown kind \"Gateway\"; the kinds are HTTPRoute, GRPCRoute, DestinationPolicy, "
                    "RateLimitPolicy, AuthorizationPolicy, MeshConfig, FaultInjection and ReferenceGrant");
}

TEST(ParseResource, UnknownKindSkipsSpecValidation) {
  Json doc = with(route_doc(), "/kind", "Gateway");
  doc["spec"] = Json::parse(R"({"anything": 1})");
  EXPECT_EQ(error_lines(doc).size(), 1u);
}

TEST(ParseResource, ApiVersionMustMatchTheKind) {
  EXPECT_ONLY_ERROR(with(route_doc(), "/apiVersion", "gateway.networking.k8s.io/v1beta1"), "apiVersion",
                    "must be \"gateway.networking.k8s.io/v1\" for kind HTTPRoute");
  EXPECT_ONLY_ERROR(with(mesh_config_doc(), "/apiVersion", "gateway.networking.k8s.io/v1"), "apiVersion",
                    "must be \"trellis.dev/v1alpha1\" for kind MeshConfig");
}

TEST(ParseResource, WrongTypesInTheEnvelope) {
  EXPECT_ONLY_ERROR(with(route_doc(), "/kind", 3), "kind", "expected a string, got an integer");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata", "reviews"), "metadata", "expected a map, got a string");
  EXPECT_ONLY_ERROR(with(route_doc(), "/spec", Json::array()), "spec", "expected a map, got a list");
}

TEST(ParseResource, NameMustBeADnsSubdomain) {
  EXPECT_ONLY_ERROR(without(route_doc(), "/metadata/name"), "metadata.name", "required field is missing");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/name", "Reviews_v1"), "metadata.name",
                    "\"Reviews_v1\" is not a valid name: use lower-case letters, digits, '-' and "
                    "'.', each '.'-separated part starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/name", ""), "metadata.name", "must not be empty");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/name", std::string(254, 'a')), "metadata.name",
                    "must be at most 253 characters, has 254");
  EXPECT_TRUE(parse_resource(with(route_doc(), "/metadata/name", "reviews.v1-canary")).ok());
}

TEST(ParseResource, NamespaceMustBeADnsLabel) {
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/namespace", "book.info"), "metadata.namespace",
                    "\"book.info\" is not a valid DNS label: use lower-case letters, digits and "
                    "'-', starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/namespace", std::string(64, 'n')), "metadata.namespace",
                    "must be at most 63 characters, has 64");
}

TEST(ParseResource, MeshConfigIsClusterScopedAndNamedDefault) {
  EXPECT_ONLY_ERROR(with(mesh_config_doc(), "/metadata/namespace", "default"), "metadata.namespace",
                    "MeshConfig is cluster-scoped: remove metadata.namespace");
  EXPECT_ONLY_ERROR(with(mesh_config_doc(), "/metadata/name", "mesh"), "metadata.name",
                    "must be \"default\": a mesh has one MeshConfig");
}

TEST(ParseResource, LabelsAreCheckedKeyByKey) {
  EXPECT_TRUE(parse_resource(
                  with(route_doc(), "/metadata/labels", Json::parse(R"({"app.kubernetes.io/name": "reviews",
                                                  "version": "v2", "empty": ""})")))
                  .ok());
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/labels/version", 2), "metadata.labels[version]",
                    "expected a string, got an integer");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/labels/version", "v2 beta"), "metadata.labels[version]",
                    "\"v2 beta\" is not a valid label value: use at most 63 letters, digits, '-', "
                    "'_' and '.', starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(
      with(route_doc(), "/metadata/labels", Json::parse(R"({"-app": "x"})")), "metadata.labels[-app]",
      "\"-app\" is not a valid label key: a label key is a name of at most 63 letters, digits, "
      "'-', '_' and '.', starting and ending with a letter or digit, with an optional DNS prefix "
      "and '/', e.g. \"app.kubernetes.io/name\"");
  std::vector<std::string> lines = error_lines(
      with(route_doc(), "/metadata/labels", Json::parse(R"({"a/b/c": "x", "Example.com/app": "y"})")));
  ASSERT_EQ(lines.size(), 2u) << joined(lines);
  EXPECT_NE(
      lines[0].find(
          "metadata.labels[Example.com/app]: \"Example.com/app\" has an invalid prefix \"Example.com\""),
      std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find("metadata.labels[a/b/c]: \"a/b/c\" has more than one '/'"), std::string::npos)
      << lines[1];
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/labels", Json::array()), "metadata.labels",
                    "expected a map of strings, got a list");
}

TEST(ParseResource, ResourceVersionIsAStringOfDigits) {
  ParsedResource big = parse_resource(with(route_doc(), "/metadata/resourceVersion", "18446744073709551615"));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big.resource.resource_version, 18446744073709551615u);
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/resourceVersion", 42), "metadata.resourceVersion",
                    "expected a string, got an integer");
  const std::string kMessage =
      " is not a resource version: expected a string of digits, as returned by the API, e.g. \"42\"";
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/resourceVersion", "v42"), "metadata.resourceVersion",
                    "\"v42\"" + kMessage);
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/resourceVersion", ""), "metadata.resourceVersion",
                    "\"\"" + kMessage);
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/resourceVersion", "18446744073709551616"),
                    "metadata.resourceVersion", "\"18446744073709551616\"" + kMessage);
}

TEST(ParseResource, UnknownFieldsAreErrors) {
  EXPECT_ONLY_ERROR(with(route_doc(), "/bogus", Json::object()), "bogus", "unknown field \"bogus\"");
  // What `get -o yaml` shows can be applied again: status is output only.
  EXPECT_TRUE(parse_resource(with(route_doc(), "/status", {{"parents", Json::array()}})).ok());
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/labls", Json::object()), "metadata.labls",
                    "unknown field \"labls\" (did you mean \"labels\"?)");
  EXPECT_ONLY_ERROR(with(route_doc(), "/metadata/annotations", Json::object()), "metadata.annotations",
                    "unknown field \"annotations\"");
}

TEST(ParseResource, SpecErrorsFollowEnvelopeErrorsWithFullPaths) {
  Json doc = with(route_doc(), "/metadata/name", "Bad");
  doc["spec"]["parentRefs"][0]["port"] = 0;
  doc["spec"]["hostnames"] = Json::array({"Example.com"});
  std::vector<std::string> lines = error_lines(doc);
  ASSERT_EQ(lines.size(), 3u) << joined(lines);
  EXPECT_EQ(lines[0].rfind("metadata.name: ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1], "spec.parentRefs[0].port: must be between 1 and 65535");
  EXPECT_EQ(lines[2].rfind("spec.hostnames[0]: ", 0), 0u) << lines[2];
}

TEST(ParseResource, KeepsWhatItCouldReadWhenInvalid) {
  ParsedResource parsed = parse_resource(with(route_doc(), "/metadata/namespace", "Bad"));
  EXPECT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.resource.kind, "HTTPRoute");
  EXPECT_EQ(parsed.resource.name, "reviews");
}

TEST(ParseResource, NullSpecIsAnEmptySpec) {
  EXPECT_ONLY_ERROR(with(route_doc(), "/spec", nullptr), "spec.parentRefs", "required field is missing");
  EXPECT_TRUE(parse_resource(with(mesh_config_doc(), "/spec", nullptr)).ok());
}

TEST(ParseResource, SameDocumentGivesTheSameErrorsInTheSameOrder) {
  Json doc = Json::parse(R"({
    "apiVersion": "x", "kind": "HTTPRoute", "extra": 1,
    "metadata": {"name": "A", "namespace": "B", "labels": {"x": "-"}, "zzz": 1},
    "spec": {"parentRefs": [], "rules": [{"bogus": 1, "backendRefs": [{"name": "a"}]}]}
  })");
  std::vector<std::string> first = error_lines(doc);
  EXPECT_EQ(first.size(), 9u) << joined(first);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(error_lines(doc), first);
}

}  // namespace
}  // namespace trellis::control
