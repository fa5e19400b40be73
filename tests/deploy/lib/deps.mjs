// Loads the npm dependencies of the deployment tests from the folder `npm ci` installed them in
// (never the source tree): $MUSC_DEPLOY_NODE_DIR, which deploy_tests.cmake and run-all.sh set.
// ES modules ignore NODE_PATH, hence a require() anchored in that folder.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import path from "node:path";

export const nodeDir = process.env.MUSC_DEPLOY_NODE_DIR ?? "";

function anchor() {
  const modules = path.join(nodeDir, "node_modules");
  if (!nodeDir || !existsSync(modules)) {
    throw new Error(
      `npm dependencies not found: set MUSC_DEPLOY_NODE_DIR to a folder where ` +
        `tests/deploy/npm-setup.sh ran (got '${nodeDir}')`);
  }
  return createRequire(path.join(nodeDir, "package.json"));
}

let req;
/** require() a dependency of tests/deploy/package.json. */
export function load(name) {
  req ??= anchor();
  return req(name);
}

/** The folder of an installed package (its package.json's folder). */
export function packageDir(name) {
  req ??= anchor();
  return path.dirname(req.resolve(`${name}/package.json`));
}
