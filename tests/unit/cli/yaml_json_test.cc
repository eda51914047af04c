// YAML -> JSON for `trellis apply` (scalar types, structure, documents, errors
// with lines), JSON -> YAML for `trellis get -o yaml` (reads back the same),
// reading resource texts (lists, JSON) and the table layout.
#include "cli/yaml_json.h"

#include <gtest/gtest.h>

#include "cli/resource_files.h"
#include "cli/table.h"

namespace trellis::cli {
namespace {

// The one document of `text`; fails the test if there is not exactly one.
Json one(const std::string& text) {
  YamlParse parsed = parse_yaml_documents(text);
  EXPECT_FALSE(parsed.error) << parsed.error->message;
  EXPECT_EQ(parsed.documents.size(), 1u);
  return parsed.documents.empty() ? Json() : parsed.documents[0].json;
}

YamlError error_of(const std::string& text) {
  YamlParse parsed = parse_yaml_documents(text);
  EXPECT_TRUE(parsed.error) << "no error for: " << text;
  EXPECT_TRUE(parsed.documents.empty());
  return parsed.error.value_or(YamlError{});
}

TEST(YamlToJson, UnquotedNumbersAreNumbers) {
  Json doc = one("weight: 90\nneg: -3\nratio: 1.5\nexp: 1e3\nhex: 0x1f\noctal: 0o17\nzero: 0\nhalf: .5\n");
  EXPECT_TRUE(doc["weight"].is_number_integer());
  EXPECT_EQ(doc["weight"], 90);
  EXPECT_EQ(doc["neg"], -3);
  EXPECT_TRUE(doc["ratio"].is_number_float());
  EXPECT_DOUBLE_EQ(doc["ratio"].get<double>(), 1.5);
  EXPECT_TRUE(doc["exp"].is_number_float());
  EXPECT_DOUBLE_EQ(doc["exp"].get<double>(), 1000);
  EXPECT_EQ(doc["hex"], 31);
  EXPECT_EQ(doc["octal"], 15);
  EXPECT_EQ(doc["zero"], 0);
  EXPECT_DOUBLE_EQ(doc["half"].get<double>(), 0.5);
}

TEST(YamlToJson, NumberLikeTextStaysText) {
  Json doc = one("version: 1.10.2\npercent: 90%\nduration: 10s\nport: 9080x\nip: 10.0.0.1\nplus: +\n");
  EXPECT_EQ(doc["version"], "1.10.2");
  EXPECT_EQ(doc["percent"], "90%");
  EXPECT_EQ(doc["duration"], "10s");
  EXPECT_EQ(doc["port"], "9080x");
  EXPECT_EQ(doc["ip"], "10.0.0.1");
  EXPECT_EQ(doc["plus"], "+");
}

TEST(YamlToJson, LargeIntegersStayExactWhileTheyFit) {
  Json doc = one("max: 18446744073709551615\nmin: -9223372036854775808\nhuge: 123456789012345678901234\n");
  EXPECT_EQ(doc["max"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(doc["min"].get<int64_t>(), INT64_MIN);
  EXPECT_TRUE(doc["huge"].is_number_float());
}

TEST(YamlToJson, BooleansAndNull) {
  Json doc = one("a: true\nb: false\nc: True\nd: FALSE\ne: ~\nf: null\ng:\nh: yes\ni: on\nj: no\n");
  EXPECT_EQ(doc["a"], true);
  EXPECT_EQ(doc["b"], false);
  EXPECT_EQ(doc["c"], true);
  EXPECT_EQ(doc["d"], false);
  EXPECT_TRUE(doc["e"].is_null());
  EXPECT_TRUE(doc["f"].is_null());
  EXPECT_TRUE(doc.contains("g"));
  EXPECT_TRUE(doc["g"].is_null());
  // YAML 1.2: these are words, not booleans.
  EXPECT_EQ(doc["h"], "yes");
  EXPECT_EQ(doc["i"], "on");
  EXPECT_EQ(doc["j"], "no");
}

TEST(YamlToJson, QuotedAndBlockScalarsStayStrings) {
  Json doc =
      one("a: \"90\"\nb: 'true'\nc: \"null\"\nd: ''\ne: |\n  line one\n  90\nf: >-\n  folded\n  text\n");
  EXPECT_EQ(doc["a"], "90");
  EXPECT_EQ(doc["b"], "true");
  EXPECT_EQ(doc["c"], "null");
  EXPECT_EQ(doc["d"], "");
  EXPECT_EQ(doc["e"], "line one\n90\n");
  EXPECT_EQ(doc["f"], "folded text");
}

TEST(YamlToJson, KeysAreAlwaysText) {
  Json doc = one("80: http\ntrue: yes\n1.5: x\n");
  EXPECT_EQ(doc["80"], "http");
  EXPECT_EQ(doc["true"], "yes");
  EXPECT_EQ(doc["1.5"], "x");
}

TEST(YamlToJson, StandardTagsForceTheType) {
  Json doc = one("a: !!str 5\nb: !!int \"7\"\nc: !!float 2\nd: !!bool \"true\"\ne: !!null ''\n");
  EXPECT_EQ(doc["a"], "5");
  EXPECT_EQ(doc["b"], 7);
  EXPECT_TRUE(doc["c"].is_number_float());
  EXPECT_EQ(doc["d"], true);
  EXPECT_TRUE(doc["e"].is_null());

  EXPECT_EQ(error_of("a: 1\nb: !!int abc\n").line, 2);
  YamlError custom = error_of("a: !secret x\n");
  EXPECT_NE(custom.message.find("unsupported tag"), std::string::npos) << custom.message;
}

TEST(YamlToJson, NestedMapsAndListsKeepTheirOrder) {
  Json doc = one(R"(
spec:
  parentRefs:
    - name: reviews
      port: 9080
  rules:
    - backendRefs:
        - {name: reviews-v1, weight: 90}
        - {name: reviews-v2, weight: 10}
      matches: []
  zeta: {}
  alpha: [a, "b", 3]
)");
  const Json& spec = doc["spec"];
  EXPECT_EQ(spec["parentRefs"][0]["port"], 9080);
  EXPECT_EQ(spec["rules"][0]["backendRefs"][1]["name"], "reviews-v2");
  EXPECT_EQ(spec["rules"][0]["backendRefs"][1]["weight"], 10);
  EXPECT_TRUE(spec["rules"][0]["matches"].is_array());
  EXPECT_TRUE(spec["zeta"].is_object());
  EXPECT_EQ(spec["alpha"], Json::parse(R"(["a", "b", 3])"));
  std::vector<std::string> keys;
  for (auto it = spec.begin(); it != spec.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"parentRefs", "rules", "zeta", "alpha"}));
}

TEST(YamlToJson, AnchorsAndAliasesAreExpanded) {
  Json doc = one("base: &port {port: 9080, weight: 1}\ncopy: *port\nname: &n reviews\nagain: *n\n");
  EXPECT_EQ(doc["copy"], doc["base"]);
  EXPECT_EQ(doc["again"], "reviews");
}

TEST(YamlToJson, SeveralDocumentsWithTheirLines) {
  YamlParse parsed = parse_yaml_documents(
      "# first\nkind: A\n---\n---\n# nothing but a comment\n---\nkind: B\nspec:\n  x: 1\n---\n");
  ASSERT_FALSE(parsed.error);
  ASSERT_EQ(parsed.documents.size(), 2u);  // the empty ones are skipped
  EXPECT_EQ(parsed.documents[0].json["kind"], "A");
  EXPECT_EQ(parsed.documents[0].line, 2);
  EXPECT_EQ(parsed.documents[1].json["kind"], "B");
  EXPECT_EQ(parsed.documents[1].line, 7);
  EXPECT_EQ(parsed.documents[1].line_of("spec.x"), 9);
}

TEST(YamlToJson, LinesOfFieldPathsAndTheirAncestors) {
  YamlParse parsed = parse_yaml_documents(R"(kind: HTTPRoute
metadata:
  labels:
    app.kubernetes.io/name: reviews
spec:
  rules:
    - backendRefs:
        - name: a
          weight: 5
)");
  ASSERT_FALSE(parsed.error);
  const YamlDocument& doc = parsed.documents.at(0);
  EXPECT_EQ(doc.line_of("spec.rules[0].backendRefs[0].weight"), 9);
  EXPECT_EQ(doc.line_of("spec.rules[0].backendRefs[0]"), 8);
  // The API names label keys in brackets.
  EXPECT_EQ(doc.line_of("metadata.labels[app.kubernetes.io/name]"), 4);
  // Paths the document does not have fall back to the nearest ancestor.
  EXPECT_EQ(doc.line_of("spec.rules[0].backendRefs[0].port"), 8);
  EXPECT_EQ(doc.line_of("spec.rules[3].matches"), 6);
  EXPECT_EQ(doc.line_of("apiVersion"), 1);
}

TEST(YamlToJson, SyntaxErrorsCarryTheirLine) {
  EXPECT_EQ(error_of("a: 1\nb: [1, 2\nc: 3\n").line, 3);
  YamlError dup = error_of("a: 1\nb: 2\na: 3\n");
  EXPECT_EQ(dup.line, 3);
  EXPECT_NE(dup.message.find("duplicate key \"a\""), std::string::npos) << dup.message;
  EXPECT_EQ(error_of("a: 1\n? [x]\n: 2\n").line, 2);
  EXPECT_EQ(error_of("a: 1\nb: .inf\n").line, 2);
  EXPECT_EQ(error_of("a: 1\nb: *nowhere\n").line, 2);
}

TEST(YamlToJson, StrayTokensFailInsteadOfHanging) {
  for (const char* text : {",", "a: 1\n,\n", "- a\n,,\n", "]"}) {
    YamlParse parsed = parse_yaml_documents(text);
    EXPECT_TRUE(parsed.error) << "no error for " << text;
  }
}

TEST(JsonToYaml, ReadsBackTheSameValue) {
  Json value = Json::parse(R"({
    "apiVersion": "trellis.dev/v1alpha1",
    "metadata": {"name": "default", "resourceVersion": "42", "labels": {"a": "true", "b": "", "c": "null",
                 "d": "yes", "e": "1.5", "f": "0x10", "g": "~", "h": ".inf", "i": "- dash", "j": "#x",
                 "k": "a: b", "l": "two\nlines", "m": "  padded  "}},
    "spec": {"n": 1, "neg": -7, "f": 2.5, "whole": 3.0, "big": 18446744073709551615, "t": true, "z": null,
             "empty": {}, "none": [], "list": [1, "1", [true, "false"], {"x": {}}]}
  })");
  std::string yaml = to_yaml(value);
  Json back = one(yaml);
  EXPECT_EQ(back, value) << yaml;
  EXPECT_NE(yaml.find("resourceVersion: \"42\""), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("{"), yaml.find("empty: {}") + 7) << yaml;
  EXPECT_EQ(yaml.back(), '\n');
}

TEST(JsonToYaml, ScalarsAndTheExampleShape) {
  EXPECT_EQ(to_yaml(Json("42")), "\"42\"\n");
  EXPECT_EQ(to_yaml(Json(42)), "42\n");
  Json route = Json::parse(R"({"spec": {"parentRefs": [{"name": "reviews", "port": 9080}]}})");
  EXPECT_EQ(to_yaml(route), "spec:\n  parentRefs:\n    - name: reviews\n      port: 9080\n");
}

TEST(ResourceText, ListsStandForTheirItemsWithLines) {
  ResourceFiles files;
  read_resource_text("routes.yaml", R"(kind: HTTPRouteList
items:
  - kind: HTTPRoute
    metadata: {name: a}
  - kind: HTTPRoute
    metadata:
      name: b
)",
                     false, files);
  ASSERT_TRUE(files.errors.empty()) << files.errors[0];
  ASSERT_EQ(files.documents.size(), 2u);
  EXPECT_EQ(files.documents[1].doc.json["metadata"]["name"], "b");
  EXPECT_EQ(files.documents[1].where(), "routes.yaml:5");
  EXPECT_EQ(files.documents[1].where("metadata.name"), "routes.yaml:7");
}

TEST(ResourceText, JsonAndItsErrors) {
  ResourceFiles files;
  read_resource_text("r.json", R"({"kind": "MeshConfig", "spec": {"n": 1}})", true, files);
  ASSERT_EQ(files.documents.size(), 1u);
  EXPECT_EQ(files.documents[0].doc.json["spec"]["n"], 1);
  EXPECT_EQ(files.documents[0].where("spec.n"), "r.json");  // JSON keeps no lines

  ResourceFiles broken;
  read_resource_text("bad.json", "{\n  \"kind\": \"A\",\n  oops\n}\n", true, broken);
  ASSERT_EQ(broken.errors.size(), 1u);
  EXPECT_EQ(broken.errors[0].rfind("bad.json:3: ", 0), 0u) << broken.errors[0];
}

TEST(ResourceText, EveryDocumentMustBeAMap) {
  ResourceFiles files;
  read_resource_text("x.yaml", "kind: A\n---\n- a list\n", false, files);
  ASSERT_EQ(files.errors.size(), 1u);
  EXPECT_EQ(files.errors[0].rfind("x.yaml:3: a resource must be a map", 0), 0u) << files.errors[0];
}

TEST(Table, AlignsColumnsAndMarksEmptyCells) {
  std::string out =
      format_table({"NAME", "VERSION", "NOTE"}, {{"reviews-canary", "3", ""}, {"r", "12", "x"}});
  EXPECT_EQ(out,
            "NAME             VERSION   NOTE\n"
            "reviews-canary   3         -\n"
            "r                12        x\n");
}

TEST(Table, CountsCharactersNotBytesAndCutsLongCells) {
  std::string out = format_table({"A", "B"}, {{"héllo", "x"}, {"hello", "y"}});
  EXPECT_EQ(out, "A       B\nhéllo   x\nhello   y\n");
  std::string cut = format_table({"A"}, {{std::string(100, 'a')}}, 10);
  EXPECT_EQ(cut, "A\naaaaaaa...\n");
  std::string controls = format_table({"A", "B"}, {{"two\nlines", "z"}});
  EXPECT_EQ(controls, "A           B\ntwo lines   z\n");
}

}  // namespace
}  // namespace trellis::cli
