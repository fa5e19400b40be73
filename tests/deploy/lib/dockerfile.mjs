// A small Dockerfile reader for the offline checks: instructions with their line numbers
// (continuations joined, comments and parser directives dropped), stages, ARG defaults, and a
// .dockerignore matcher. No dependencies.

/** [{line, keyword, args, flags: Map, rest}] of a Dockerfile's text. */
export function instructions(text) {
  const out = [];
  const lines = text.split("\n");
  let i = 0;
  while (i < lines.length) {
    const raw = lines[i];
    if (/^\s*(#.*)?$/.test(raw)) { i++; continue; }
    const start = i + 1;
    let joined = raw;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, " ");
      i++;
      // Comment lines inside a continuation are dropped, as BuildKit does.
      if (/^\s*#/.test(lines[i])) { joined += " \\"; continue; }
      joined += lines[i];
    }
    i++;
    const m = joined.trim().match(/^(\S+)\s*([\s\S]*)$/);
    const keyword = m[1].toUpperCase();
    let rest = m[2].trim();
    const flags = new Map();
    // Leading --flag=value options (COPY --from=, --chmod=, HEALTHCHECK --interval=, ...).
    while (/^--[\w-]+(=\S*)?(\s|$)/.test(rest)) {
      const f = rest.match(/^--([\w-]+)(?:=(\S*))?\s*/);
      flags.set(f[1], f[2] ?? "");
      rest = rest.slice(f[0].length);
    }
    let args;
    if (rest.startsWith("[")) {
      try { args = JSON.parse(rest); } catch { args = null; }
    }
    out.push({ line: start, keyword, flags, rest, json: Array.isArray(args), args: args ?? splitWords(rest) });
  }
  return out;
}

function splitWords(s) {
  return s.match(/"(?:[^"\\]|\\.)*"|'[^']*'|\S+/g)?.map((w) => w.replace(/^(["'])([\s\S]*)\1$/, "$2")) ?? [];
}

/** Substitutes ${NAME}, ${NAME:-x}, $NAME from vars. */
export function expand(s, vars) {
  return s
    .replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, n, d) => vars.get(n) || d || "")
    .replace(/\$(\w+)/g, (_, n) => vars.get(n) ?? "");
}

/**
 * Stages: [{name, index, base, from: instruction, body: [instructions]}]; global ARG defaults
 * (before the first FROM) in globalArgs.
 */
export function stages(ins) {
  const globalArgs = new Map();
  const out = [];
  for (const x of ins) {
    if (x.keyword === "FROM") {
      const base = expand(x.args[0] ?? "", globalArgs);
      const asIdx = x.args.findIndex((a) => a.toLowerCase() === "as");
      out.push({ name: asIdx >= 0 ? x.args[asIdx + 1] : null, index: out.length, base, from: x, body: [] });
    } else if (out.length === 0) {
      if (x.keyword === "ARG") {
        const [n, ...v] = x.rest.split("=");
        globalArgs.set(n.trim(), v.join("=").replace(/^"(.*)"$/, "$1"));
      }
    } else {
      out[out.length - 1].body.push(x);
    }
  }
  return { stages: out, globalArgs };
}

/** A .dockerignore matcher: (relativePath) => excluded. Supports *, ?, ** and ! exceptions. */
export function dockerignore(text) {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+/, "").replace(/\/+$/, "");
      const re = pattern
        .split("/")
        .map((seg) => (seg === "**" ? "(?:.*)" : seg.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")))
        .join("/")
        .replace(/\(\?:\.\*\)\//g, "(?:.*/)?");
      return { negate, re: new RegExp(`^${re}(?:/.*)?$`) };
    });
  return (rel) => {
    let excluded = false;
    for (const r of rules) if (r.re.test(rel)) excluded = !r.negate;
    return excluded;
  };
}
