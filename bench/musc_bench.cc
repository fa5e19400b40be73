// musc-bench: offline benchmarks of the MuSc core and a demo batch on real images.
//   musc-bench msm   [--quick] [--budget-mib B] [--threads T] [--models all|M ...]
//   musc-bench demo  --data DIR [--model M] [--weights DIR] [--size S] [--limit N] [--out DIR]
//   musc-bench line  --data DIR [--model M] [--weights DIR | --random-weights] [--bank M]
//   musc-bench backbone | memory | approx | scaling   (issue 8; see bench/perf_benchmarks.h)
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "bench/demo_batch.h"
#include "bench/line_benchmark.h"
#include "bench/msm_benchmark.h"
#include "bench/perf_benchmarks.h"

namespace {

// An option naming a NumericType ("fp32", "bf16", "fp16"): CLI11 reads the name, ParseNumericType
// decides, and a bad name is a usage error like any other.
CLI::Option* AddNumericTypeOption(CLI::App* app, const std::string& name, musc::NumericType& type,
                                  const std::string& help) {
  return app
      ->add_option_function<std::string>(
          name,
          [name, &type](const std::string& value) {
            absl::StatusOr<musc::NumericType> parsed = musc::ParseNumericType(value);
            if (!parsed.ok())
              throw CLI::ValidationError(name, std::string(parsed.status().message()));
            type = *parsed;
          },
          help)
      ->default_str(musc::NumericTypeName(type));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"musc-bench: MuSc core benchmarks and demo"};
  app.require_subcommand(1);

  musc::MsmBenchmarkOptions msm;
  bool quick = false;
  int64_t msm_budget_mib = msm.block_budget_bytes >> 20;
  CLI::App* msm_cmd = app.add_subcommand(
      "msm", "fp32 GEMM vs mutual-scoring throughput; last line msm_vs_gemm_ratio=X.XX");
  msm_cmd->add_flag("--quick", quick, "small shapes only (N 8,16; L 196; C 384)");
  msm_cmd->add_option("--budget-mib", msm_budget_mib, "MSM block budget in MiB");
  msm_cmd->add_option("--threads", msm.threads, "intra-op threads (0 = all cores)");
  msm_cmd->add_option("--repeats", msm.repeats, "timed repetitions per shape (best kept)");
  msm_cmd->add_option("--images", msm.images, "batch sizes N to measure");
  msm_cmd->add_option("--patches", msm.patches, "patch counts L to measure");
  msm_cmd->add_option("--channels", msm.channels, "channel counts C to measure");
  msm_cmd->add_option("--models", msm.models,
                      "registry models whose MSM shapes to measure instead ('all' = every one)");
  msm_cmd->add_option("--darknet-weights", msm.darknet_weights,
                      "darknet-tiny weights directory (its layer shapes are read from it)");

  musc::DemoOptions demo;
  int64_t demo_budget_mib = demo.engine.scoring.block_budget_bytes >> 20;
  CLI::App* demo_cmd =
      app.add_subcommand("demo", "score an MVTec-layout category's test split as one batch");
  demo_cmd->add_option("--data", demo.data_dir, "category folder (holding test/)")->required();
  demo_cmd->add_option("--model", demo.engine.backbone.model, "backbone model name");
  demo_cmd->add_option("--weights", demo.engine.backbone.weights_path, "weights file or folder");
  demo_cmd->add_option("--size", demo.engine.backbone.input_size, "input size S (0 = default)");
  demo_cmd->add_option("--layers", demo.engine.backbone.layers, "feature layers (1-based)");
  demo_cmd->add_option("--degrees", demo.engine.scoring.degrees, "LNAMD degrees");
  demo_cmd->add_option("--windows", demo.engine.scoring.rscin_windows, "RsCIN windows");
  demo_cmd->add_option("--limit", demo.limit, "at most this many images (0 = all)");
  demo_cmd->add_option("--out", demo.out_dir, "write heat-map PNGs here");
  demo_cmd->add_option("--threads", demo.engine.intra_op_threads, "intra-op threads");
  demo_cmd->add_option("--budget-mib", demo_budget_mib, "MSM block budget in MiB");
  demo_cmd->add_option("--approximate", demo.engine.scoring.approximate_neighbours,
                       "approximate MSM: M neighbours per image (0 = exact)");
  AddNumericTypeOption(demo_cmd, "--token-dtype", demo.engine.scoring.token_dtype,
                       "token storage: fp32, bf16, fp16");

  musc::LineBenchmarkOptions line;
  line.engine.intra_op_threads = 0;
  CLI::App* line_cmd = app.add_subcommand(
      "line", "line-mode latency per image vs a batch; last line line_p50_ms=...");
  line_cmd->add_option("--data", line.data_dir, "folder of images (recursive)")->required();
  line_cmd->add_option("--model", line.engine.backbone.model, "backbone model name");
  line_cmd->add_option("--weights", line.engine.backbone.weights_path, "weights file or folder");
  line_cmd->add_flag("--random-weights", line.engine.backbone.random_weights,
                     "ViT: seeded random weights (timing only; scores are meaningless)");
  line_cmd->add_option("--size", line.engine.backbone.input_size, "input size S (0 = default)");
  line_cmd->add_option("--layers", line.engine.backbone.layers, "feature layers (1-based)");
  line_cmd->add_option("--bank", line.bank_size, "bank size M")->capture_default_str();
  line_cmd->add_option("--scored", line.scored, "images timed")->capture_default_str();
  line_cmd->add_option("--threads", line.engine.intra_op_threads, "intra-op threads");

  musc::BackboneBenchmarkOptions bb;
  CLI::App* bb_cmd = app.add_subcommand(
      "backbone", "ViT forward FLOP/s vs fp32 GEMM; last line backbone_vs_gemm_ratio=X.XX");
  bb_cmd->add_option("--model", bb.model, "ViT registry name")->capture_default_str();
  bb_cmd->add_option("--size", bb.input_size, "input size S")->capture_default_str();
  bb_cmd->add_option("--batch", bb.batches, "images per forward pass (each measured)");
  bb_cmd->add_option("--repeats", bb.repeats, "timed forwards per batch size (best kept)");
  bb_cmd->add_option("--threads", bb.threads, "intra-op threads (0 = all cores)");
  bool no_breakdown = false;
  bb_cmd->add_flag("--no-breakdown", no_breakdown, "skip the per-operator timing of one block");

  musc::MemoryBenchmarkOptions mem;
  int64_t mem_budget_mib = mem.block_budget_bytes >> 20;
  CLI::App* mem_cmd = app.add_subcommand(
      "memory", "MSM peak RSS vs N; last line memory_slope_vs_token_bytes=X.XX ...");
  mem_cmd->add_option("--images", mem.images, "batch sizes N");
  mem_cmd->add_option("--patches", mem.patches, "patches L")->capture_default_str();
  mem_cmd->add_option("--channels", mem.channels, "channels C")->capture_default_str();
  mem_cmd->add_option("--budget-mib", mem_budget_mib, "MSM block budget in MiB")
      ->capture_default_str();
  AddNumericTypeOption(mem_cmd, "--token-dtype", mem.token_dtype, "fp32, bf16, fp16");
  mem_cmd->add_option("--threads", mem.threads, "intra-op threads (0 = all cores)");
  musc::BackboneOptions mem_backbone;
  mem_cmd->add_option("--model", mem_backbone.model,
                      "whole batches through the engine with this backbone (else MSM alone)");
  mem_cmd->add_option("--weights", mem_backbone.weights_path, "weights file or folder");
  mem_cmd->add_flag("--random-weights", mem_backbone.random_weights, "ViT: seeded random weights");
  mem_cmd->add_option("--size", mem_backbone.input_size, "input size S (0 = default)");

  musc::ApproxBenchmarkOptions approx;
  CLI::App* approx_cmd = app.add_subcommand(
      "approx", "approximate MSM (M neighbours) vs exact; last line approx_speedup=X.XX");
  approx_cmd->add_option("--images", approx.images, "batch sizes N");
  approx_cmd->add_option("--neighbours", approx.neighbours, "neighbour counts M");
  approx_cmd->add_option("--patches", approx.patches, "patches L")->capture_default_str();
  approx_cmd->add_option("--channels", approx.channels, "channels C")->capture_default_str();
  approx_cmd->add_option("--threads", approx.threads, "intra-op threads (0 = all cores)");

  musc::ScalingBenchmarkOptions scaling;
  CLI::App* scaling_cmd = app.add_subcommand(
      "scaling", "whole-batch time vs N through the engine; last line scaling_exponent=X.XX");
  scaling_cmd->add_option("--model", scaling.engine.backbone.model, "backbone model name");
  scaling_cmd->add_option("--weights", scaling.engine.backbone.weights_path, "weights");
  scaling_cmd->add_flag("--random-weights", scaling.engine.backbone.random_weights,
                        "ViT: seeded random weights (timing only)");
  scaling_cmd->add_option("--size", scaling.engine.backbone.input_size, "input size S");
  scaling_cmd->add_option("--layers", scaling.engine.backbone.layers, "feature layers");
  scaling_cmd->add_option("--images", scaling.images, "batch sizes N");
  scaling_cmd->add_option("--approximate", scaling.engine.scoring.approximate_neighbours,
                          "approximate MSM neighbours (0 = exact)");
  scaling_cmd->add_option("--threads", scaling.engine.intra_op_threads, "intra-op threads");

  CLI11_PARSE(app, argc, argv);
  if (line_cmd->parsed()) return musc::RunLineBenchmark(line);
  if (bb_cmd->parsed()) {
    bb.breakdown = !no_breakdown;
    return musc::RunBackboneBenchmark(bb);
  }
  if (mem_cmd->parsed()) {
    mem.block_budget_bytes = mem_budget_mib << 20;
    if (mem_cmd->count("--model") > 0) mem.engine_backbone = mem_backbone;
    return musc::RunMemoryBenchmark(mem);
  }
  if (approx_cmd->parsed()) return musc::RunApproxBenchmark(approx);
  if (scaling_cmd->parsed()) {
    scaling.engine.scoring.keep_maps = false;  // Timing only.
    return musc::RunScalingBenchmark(scaling);
  }

  if (msm_cmd->parsed()) {
    msm.block_budget_bytes = msm_budget_mib << 20;
    if (quick) {
      msm.images = {8, 16};
      msm.patches = {196};
      msm.channels = {384};
    }
    return musc::RunMsmBenchmark(msm);
  }
  demo.engine.scoring.block_budget_bytes = demo_budget_mib << 20;
  return musc::RunDemoBatch(demo);
}
