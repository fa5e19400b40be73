// musc-synth: writes a synthetic MVTec-AD-layout category (synth/synth.h) for demos and tests.
//   musc-synth --out DIR [--category NAME] [--kind texture|object] [--size N] [--good N]
//              [--defective N] [--types scratch,spot,missing] [--train-good N] [--seed S]
//              [--overwrite]
#include <CLI/CLI.hpp>
#include <cstdio>

#include "synth/synth.h"

int main(int argc, char** argv) {
  CLI::App app{
      "musc-synth: a deterministic synthetic defect data set in the MVTec AD layout "
      "(<out>/<category>/test/<type>/NNN.png, ground_truth/<type>/NNN_mask.png)"};
  musc::SynthOptions options;
  std::string kind = "texture";
  app.add_option("--out", options.out_dir, "output folder (the category folder goes inside)")
      ->required();
  app.add_option("--category", options.category, "category folder name")->capture_default_str();
  app.add_option("--kind", kind, "product kind: texture (woven fabric) or object (steel flange)")
      ->check(CLI::IsMember({"texture", "object"}))
      ->capture_default_str();
  app.add_option("--size", options.size, "image width and height in pixels (32..4096)")
      ->capture_default_str();
  app.add_option("--good", options.good_count, "test/good images")->capture_default_str();
  app.add_option("--defective", options.defective_count, "test images per defect type")
      ->capture_default_str();
  app.add_option("--types", options.defect_types,
                 "defect types, comma-separated: scratch, spot, missing, crack")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--train-good", options.train_good_count,
                 "train/good images (0 = no train folder; MuSc needs none)")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "random seed (same seed, same images)")
      ->capture_default_str();
  app.add_flag("--overwrite", options.overwrite,
               "replace test/, ground_truth/ and train/ of an existing category folder");
  CLI11_PARSE(app, argc, argv);

  const absl::StatusOr<musc::ProductKind> parsed = musc::ParseProductKind(kind);
  if (!parsed.ok()) {
    std::fprintf(stderr, "musc-synth: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  options.kind = *parsed;
  if (const absl::Status status = musc::WriteSyntheticCategory(options); !status.ok()) {
    std::fprintf(stderr, "musc-synth: %s\n", std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("wrote %d good + %zu×%d defective %s images (%d px, seed %llu) to %s/%s\n",
              options.good_count, options.defect_types.size(), options.defective_count,
              std::string(musc::ProductKindName(options.kind)).c_str(), options.size,
              static_cast<unsigned long long>(options.seed), options.out_dir.c_str(),
              options.category.c_str());
  return 0;
}
