// musc-bench: offline benchmarks of the MuSc core and a demo batch on real images.
//   musc-bench msm   [--quick] [--budget-mib B] [--threads T]
//   musc-bench demo  --data DIR [--model M] [--weights DIR] [--size S] [--limit N] [--out DIR]
//   musc-bench line  --data DIR [--model M] [--weights DIR | --random-weights] [--bank M]
#include <CLI/CLI.hpp>
#include <cstdio>

#include "bench/demo_batch.h"
#include "bench/line_benchmark.h"
#include "bench/msm_benchmark.h"

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

  CLI11_PARSE(app, argc, argv);
  if (line_cmd->parsed()) return musc::RunLineBenchmark(line);

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
