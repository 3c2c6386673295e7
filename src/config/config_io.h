// Loading, overriding, validating and writing configs.
//
//   Config cfg = load_config("configs/tiny.json", {"train.steps=50"});
//   validate_config(cfg, /*world_size=*/1);
//
// Every error names the config file and the key path, e.g.
//   config configs/tiny.json: model.n_head: 5 does not divide model.d_model = 128
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"

namespace muongpt {

// Reads a JSON file, applies "key.path=value" overrides (value parsed as JSON
// when it parses, else taken as a string) and converts it to a Config.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Converts an already-parsed document. `source` names it in error messages.
Config config_from_json(const nlohmann::json& doc, const std::string& source);

// Applies one "a.b.c=value" override to a JSON document (array elements by
// index: "optim.groups.0.lr=0.1").
void apply_override(nlohmann::json& doc, const std::string& assignment);

nlohmann::json config_to_json(const Config& cfg);

// Semantic checks that need more than one field (shapes, batch divisibility,
// optimizer groups). Data files are checked by check_data_files().
void validate_config(const Config& cfg, const std::string& source, int world_size);

// Checks that the train and val patterns match files.
void check_data_files(const Config& cfg, const std::string& source);

// Parameter-name pattern match used by optimizer groups: '*' matches any run
// of characters (dots included), '?' one character.
bool name_matches(const std::string& pattern, const std::string& name);

// Markdown table of every config key with its type, default and description.
std::string config_reference_markdown();

}  // namespace muongpt
