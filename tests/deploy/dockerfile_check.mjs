#!/usr/bin/env node
// Offline checks of Dockerfile and Dockerfile.cuda (no Docker engine exists here):
//   * dockerfile-utils' validator (syntax, instruction arguments, flags), every rule as an error;
//   * base images pinned (a tag other than latest, or a digest), resolved through ARG defaults;
//   * stage names unique, COPY --from names an earlier stage;
//   * build stage installs with scripts/install-deps.sh, runtime stage with --runtime only;
//   * apt-get install with --no-install-recommends, after apt-get update, lists removed in the
//     same RUN;
//   * final stage: non-root numeric USER, HEALTHCHECK through `musc-client ... health` on the
//     EXPOSEd gRPC port, EXPOSE 50051 and 9464, exec-form ENTRYPOINT that was COPY'd in, the
//     products file CMD names is in the image;
//   * every COPY source exists in the repository and is not excluded by <Dockerfile>.dockerignore,
//     which must exclude the build trees and .git.
//
//   MUSC_DEPLOY_NODE_DIR=DIR node tests/deploy/dockerfile_check.mjs
import { readFileSync, existsSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "./lib/deps.mjs";
import { instructions, stages, dockerignore, expand } from "./lib/dockerfile.mjs";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"];
const GRPC_PORT = "50051";
const METRICS_PORT = "9464";

/** Is an image reference pinned: a digest, or a tag that is not "latest"? */
export function pinned(image) {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const lastSegment = image.split("/").pop();
  const tag = lastSegment.includes(":") ? lastSegment.split(":").pop() : "";
  return tag !== "" && tag !== "latest" && !tag.includes("$");
}

/** The final value of each ENV key of a stage. */
function stageEnv(stage) {
  const env = new Map();
  for (const x of stage.body.filter((i) => i.keyword === "ENV")) {
    for (const m of x.rest.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) env.set(m[1], m[2].replace(/^"(.*)"$/, "$1"));
  }
  return env;
}

/**
 * Problems of one Dockerfile. opts: {name, ignoreText, exists(rel), executable(rel)}; the last
 * two default to the repository on disk.
 */
export function checkDockerfile(text, opts) {
  const name = opts.name;
  const exists = opts.exists ?? ((rel) => existsSync(path.join(repo, rel)));
  const executable = opts.executable ?? ((rel) => (statSync(path.join(repo, rel)).mode & 0o111) !== 0);
  const errors = [];
  const err = (line, m) => errors.push(`${name}:${line}: ${m}`);

  // 1. The npm validator, with every optional rule raised to an error.
  const du = load("dockerfile-utils");
  const strict = Object.fromEntries(
    ["deprecatedMaintainer", "directiveCasing", "emptyContinuationLine", "instructionCasing",
      "instructionCmdMultiple", "instructionEntrypointMultiple", "instructionHealthcheckMultiple",
      "instructionJSONInSingleQuotes", "instructionWorkdirRelative"].map((k) => [k, du.ValidationSeverity.ERROR]));
  for (const d of du.validate(text, strict)) err(d.range.start.line + 1, `dockerfile-utils: ${d.message}`);

  const ins = instructions(text);
  const { stages: st, globalArgs } = stages(ins);
  if (st.length < 2) err(1, "must be multi-stage (build and runtime)");
  const names = new Set();
  for (const s of st) {
    // 2. Pinned bases (or an earlier stage).
    if (!names.has(s.base) && !pinned(s.base)) err(s.from.line, `base image '${s.base}' is not pinned (tag or digest)`);
    if (s.name) {
      if (names.has(s.name)) err(s.from.line, `stage name '${s.name}' used twice`);
      names.add(s.name);
    }
    // Stage-local ARGs (with defaults) are visible to later instructions of the stage.
    for (const x of s.body) {
      // 3. COPY --from an earlier stage.
      if (x.keyword === "COPY" && x.flags.has("from")) {
        const from = x.flags.get("from");
        const earlier = st.slice(0, s.index).map((p) => p.name);
        if (!earlier.includes(from) && !(/^\d+$/.test(from) && Number(from) < s.index)) {
          err(x.line, `COPY --from=${from}: no earlier stage of that name`);
        }
      }
      // 5. apt hygiene.
      if (x.keyword === "RUN") {
        const cmd = x.rest;
        const install = cmd.search(/apt-get\s+(-\S+\s+)*install/);
        if (install >= 0) {
          const installs = cmd.match(/apt-get\s+(?:-\S+\s+)*install[^&;|]*/g);
          for (const one of installs) {
            if (!one.includes("--no-install-recommends")) err(x.line, "apt-get install without --no-install-recommends");
          }
          const update = cmd.search(/apt-get\s+(-\S+\s+)*update/);
          if (update < 0 || update > install) err(x.line, "apt-get install without apt-get update before it in the same RUN");
        }
        const touchesApt = install >= 0 || /install-deps\.sh/.test(cmd);
        if (touchesApt && !/rm -rf \/var\/lib\/apt\/lists/.test(cmd)) {
          err(x.line, "RUN installs packages but does not remove /var/lib/apt/lists");
        }
      }
    }
  }

  const build = st[0];
  const final = st[st.length - 1];
  if (!build || !final || build === final) return errors;
  // 4. One dependency list: the build stage runs install-deps.sh, the final one --runtime.
  const runs = (s) => s.body.filter((x) => x.keyword === "RUN").map((x) => x.rest);
  if (!runs(build).some((r) => /install-deps\.sh(?!\s+--runtime)/.test(r))) {
    err(build.from.line, "the build stage must install with scripts/install-deps.sh");
  }
  const finalDeps = runs(final).filter((r) => /install-deps\.sh/.test(r));
  if (finalDeps.length === 0) err(final.from.line, "the runtime stage must install with install-deps.sh --runtime");
  for (const r of finalDeps) {
    if (!/install-deps\.sh\s+--runtime/.test(r)) err(final.from.line, "the runtime stage runs install-deps.sh without --runtime (build tools in the image)");
  }

  // 6. Final stage: user, health check, ports, entry point.
  const last = (kw) => final.body.filter((x) => x.keyword === kw).pop();
  const user = last("USER");
  const uid = user?.args[0]?.split(":")[0];
  if (!user) err(final.from.line, "final stage has no USER (runs as root)");
  else if (!/^\d+$/.test(uid) || uid === "0") err(user.line, `USER '${user.args[0]}' must be a numeric non-root uid (Kubernetes runAsNonRoot checks it)`);

  const exposed = final.body.filter((x) => x.keyword === "EXPOSE").flatMap((x) => x.args.map((p) => p.split("/")[0]));
  for (const p of [GRPC_PORT, METRICS_PORT]) if (!exposed.includes(p)) err(final.from.line, `final stage does not EXPOSE ${p}`);

  const hc = last("HEALTHCHECK");
  if (!hc || /^NONE\b/i.test(hc.rest)) err(final.from.line, "final stage has no HEALTHCHECK");
  else {
    const cmd = hc.rest.replace(/^CMD\s+/i, "");
    let argv;
    try { argv = cmd.startsWith("[") ? JSON.parse(cmd) : cmd.split(/\s+/); } catch { argv = []; }
    const server = argv[argv.indexOf("--server") + 1] ?? "";
    if (!/musc-client$/.test(argv[0] ?? "") || argv[argv.length - 1] !== "health") {
      err(hc.line, "HEALTHCHECK must run musc-client ... health (the gRPC health service)");
    }
    if (server.split(":").pop() !== GRPC_PORT) err(hc.line, `HEALTHCHECK must ask the gRPC port ${GRPC_PORT}`);
  }

  // Paths the final stage puts into the image.
  const copied = new Map();  // image path -> source (repo-relative or "stage:path")
  for (const x of final.body.filter((i) => i.keyword === "COPY" || i.keyword === "ADD")) {
    const parts = x.args;
    const dest = parts[parts.length - 1];
    for (const src of parts.slice(0, -1)) {
      const target = dest.endsWith("/") ? dest + path.basename(src) : dest;
      copied.set(target, x.flags.has("from") ? `${x.flags.get("from")}:${src}` : src);
    }
  }
  const entry = last("ENTRYPOINT");
  if (!entry?.json) err(entry?.line ?? final.from.line, "ENTRYPOINT must be in exec form (the server must be PID 1 to get SIGTERM)");
  else {
    const src = copied.get(entry.args[0]);
    if (!src) err(entry.line, `ENTRYPOINT ${entry.args[0]} is not copied into the image`);
    else if (!src.includes(":") && exists(src) && !executable(src)) err(entry.line, `${src} is not executable`);
  }
  const cmd = last("CMD");
  const cmdArgs = cmd?.json ? cmd.args : [];
  const pIdx = cmdArgs.indexOf("--products");
  if (pIdx < 0 || !copied.has(cmdArgs[pIdx + 1])) err(cmd?.line ?? final.from.line, "CMD's --products file is not in the image");
  for (const [flag, port] of [["--listen", GRPC_PORT], ["--metrics_listen", METRICS_PORT]]) {
    const i = cmdArgs.indexOf(flag);
    if (i < 0 || cmdArgs[i + 1].split(":").pop() !== port) err(cmd?.line ?? final.from.line, `CMD ${flag} must use port ${port}`);
  }
  const env = stageEnv(final);
  if (env.get("MUSC_WEIGHTS_DIR") !== "/models") err(final.from.line, "ENV MUSC_WEIGHTS_DIR must be /models (the weights mount)");
  // fetch-weights.sh reads ../core/models.tsv next to its folder.
  const fetch = [...copied.keys()].find((k) => k.endsWith("/scripts/fetch-weights.sh"));
  if (!fetch || !copied.has(path.join(path.dirname(path.dirname(fetch)), "core", "models.tsv"))) {
    err(final.from.line, "fetch-weights.sh must be copied with core/models.tsv beside it (../core/models.tsv)");
  }

  // 7. Build context: COPY sources exist and survive the .dockerignore.
  if (opts.ignoreText === null) err(1, `${name}.dockerignore missing (build trees would enter the context)`);
  const ignored = dockerignore(opts.ignoreText ?? "");
  for (const must of ["build", "build-asan", ".git"]) {
    if (!ignored(must)) err(1, `${name}.dockerignore does not exclude ${must}`);
  }
  for (const s of st) {
    const vars = new Map(globalArgs);
    for (const x of s.body.filter((i) => i.keyword === "COPY" || i.keyword === "ADD")) {
      if (x.flags.has("from")) continue;
      for (const raw of x.args.slice(0, -1)) {
        const src = expand(raw, vars).replace(/^\.\/?/, "");
        if (src === "" ) {
          if (ignored("scripts/install-deps.sh") || ignored("CMakeLists.txt")) err(x.line, "COPY . needs the sources the .dockerignore excludes");
          continue;
        }
        if (/^https?:/.test(src)) continue;
        if (!exists(src)) err(x.line, `COPY source '${src}' does not exist`);
        else if (ignored(src)) err(x.line, `COPY source '${src}' is excluded by ${name}.dockerignore`);
      }
    }
  }
  return errors;
}

function main() {
  const problems = [];
  for (const name of DOCKERFILES) {
    const file = path.join(repo, name);
    const ignoreFile = `${file}.dockerignore`;
    const ignoreText = existsSync(ignoreFile) ? readFileSync(ignoreFile, "utf8") : null;
    const errs = checkDockerfile(readFileSync(file, "utf8"), { name, ignoreText });
    problems.push(...errs);
    console.log(`${name}: ${errs.length ? `${errs.length} problem(s)` : "ok"}`);
  }
  // Dockerfile.cuda builds against the CUDA LibTorch, not Debian's.
  const cuda = readFileSync(path.join(repo, "Dockerfile.cuda"), "utf8");
  if (!/-DCMAKE_PREFIX_PATH=\S*libtorch/.test(cuda)) problems.push("Dockerfile.cuda: cmake must get -DCMAKE_PREFIX_PATH=<libtorch>");
  if (problems.length) {
    console.error(problems.map((p) => `FAIL ${p}`).join("\n"));
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
