// Unknown-field check for Kubernetes objects. kubernetes-models' validate() checks types and
// required fields but accepts any extra key, so a typo such as `readinesProbe` or a field at the
// wrong level would pass it (and the API server would drop it, or reject it under strict field
// validation). This walks an object along the TypeScript declarations (.d.ts) that ship with the
// models: every interface lists its fields, with their types naming the next interface.
//
// The declarations are regular generated code; the parser covers what they use: string-literal
// property names, optional marks, unions, Array<T>, inline object types, index signatures,
// imported names and `export { A as B }` aliases.
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { packageDir } from "./deps.mjs";

const fileCache = new Map();

function tokenize(src) {
  const text = src.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  const tokens = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|\d+(?:\.\d+)?|=>|\S)/gy;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m[1] === undefined) break;
    tokens.push(m[1]);
  }
  return tokens;
}

/** Parses a type starting at tokens[i]; returns [type, nextIndex]. */
function parseType(t, i) {
  const members = [];
  let [first, j] = parsePrimary(t, i);
  members.push(first);
  while (t[j] === "|" || t[j] === "&") {
    const [next, k] = parsePrimary(t, j + 1);
    members.push(next);
    j = k;
  }
  return [members.length === 1 ? members[0] : { kind: "union", members }, j];
}

function parsePrimary(t, i) {
  const tok = t[i];
  if (tok === "|") return parsePrimary(t, i + 1);  // leading bar
  if (tok === "(") {
    const [inner, j] = parseType(t, i + 1);
    return [inner, t[j] === ")" ? j + 1 : j];
  }
  if (tok === "{") return parseObject(t, i);
  if (/^["'\d]/.test(tok)) return [{ kind: "prim" }, i + 1];
  if (tok === "import") {  // import("x").Y<...>: not a field type we walk into
    let j = i, depth = 0;
    do {
      if (t[j] === "(" || t[j] === "<") depth++;
      if (t[j] === ")" || t[j] === ">") depth--;
      j++;
    } while (depth > 0 || t[j] === "." || t[j - 1] === ".");
    return [{ kind: "any" }, j];
  }
  let j = i + 1;
  let type;
  if (tok === "Array" && t[j] === "<") {
    const [elem, k] = parseType(t, j + 1);
    type = { kind: "array", elem };
    j = k + 1;  // ">"
  } else if (["string", "number", "boolean", "null", "undefined", "true", "false"].includes(tok)) {
    type = { kind: "prim" };
  } else if (["any", "unknown", "object", "Record"].includes(tok)) {
    type = { kind: "any" };
    if (t[j] === "<") {
      let depth = 0;
      do {
        if (t[j] === "<") depth++;
        if (t[j] === ">") depth--;
        j++;
      } while (depth > 0);
    }
  } else {
    type = { kind: "ref", name: tok };
    // Indexed access: IFoo["spec"].
    while (t[j] === "[" && /^["']/.test(t[j + 1])) {
      type = { kind: "index", base: type, key: t[j + 1].slice(1, -1) };
      j += 3;
    }
  }
  while (t[j] === "[" && t[j + 1] === "]") {  // T[]
    type = { kind: "array", elem: type };
    j += 2;
  }
  return [type, j];
}

function parseObject(t, i) {
  // t[i] === "{"
  const props = new Map();
  let index = null;
  let j = i + 1;
  while (t[j] !== "}") {
    if (t[j] === ";" || t[j] === ",") { j++; continue; }
    if (t[j] === "[") {  // [key: string]: T
      while (t[j] !== "]") j++;
      j += 2;  // "]" ":"
      const [vt, k] = parseType(t, j);
      index = vt;
      j = k;
      continue;
    }
    if (t[j] === "readonly") j++;
    const name = /^["']/.test(t[j]) ? t[j].slice(1, -1) : t[j];
    j++;
    if (t[j] === "?") j++;
    if (t[j] !== ":") throw new Error(`d.ts parse error near '${name} ${t[j]}'`);
    const [pt, k] = parseType(t, j + 1);
    props.set(name, pt);
    j = k;
  }
  return [{ kind: "object", props, index }, j + 1];
}

/** Declarations of one .d.ts file: imports, interfaces, type aliases, export aliases. */
function declarations(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  const t = tokenize(readFileSync(file, "utf8"));
  const decl = { file, imports: new Map(), types: new Map(), aliases: new Map() };
  for (let i = 0; i < t.length; i++) {
    if (t[i] === "import" && t[i + 1] === "{") {
      let j = i + 2;
      const names = [];
      while (t[j] !== "}") {
        if (t[j] !== ",") {
          if (t[j + 1] === "as") { names.push([t[j + 2], t[j]]); j += 2; } else names.push([t[j], t[j]]);
        }
        j++;
      }
      const from = t[j + 2].slice(1, -1);
      for (const [local, remote] of names) decl.imports.set(local, { from, remote });
      i = j + 2;
    } else if (t[i] === "interface") {
      const name = t[i + 1];
      let j = i + 2;
      while (t[j] !== "{") j++;  // skip `extends X`
      const [type, k] = parseObject(t, j);
      decl.types.set(name, type);
      i = k - 1;
    } else if (t[i] === "type" && t[i + 2] === "=" && t[i - 1] === "declare") {
      const [type, k] = parseType(t, i + 3);
      decl.types.set(t[i + 1], type);
      i = k - 1;
    } else if (t[i] === "export" && t[i + 1] === "{") {
      let j = i + 2;
      while (t[j] !== "}") {
        if (t[j + 1] === "as") { decl.aliases.set(t[j + 2], t[j]); j += 3; } else j++;
      }
      i = j;
    }
  }
  fileCache.set(file, decl);
  return decl;
}

function resolveImportPath(fromFile, spec) {
  let base;
  if (spec.startsWith(".")) {
    base = path.resolve(path.dirname(fromFile), spec);
  } else {
    const parts = spec.split("/");
    const pkg = spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
    base = path.join(packageDir(pkg), spec.slice(pkg.length));
  }
  for (const candidate of [`${base}.d.ts`, path.join(base, "index.d.ts")]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** The type a name stands for in a file: [type, file it was declared in], or null. */
function resolveName(file, name, depth = 0) {
  if (depth > 20) return null;
  const decl = declarations(file);
  if (decl.types.has(name)) return [decl.types.get(name), file];
  if (decl.aliases.has(name)) return resolveName(file, decl.aliases.get(name), depth + 1);
  const imp = decl.imports.get(name);
  if (imp) {
    const target = resolveImportPath(file, imp.from);
    return target ? resolveName(target, imp.remote, depth + 1) : null;
  }
  return null;
}

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function check(value, type, file, at, errors) {
  if (value === null || value === undefined) return;
  switch (type.kind) {
    case "prim":
    case "any":
      return;
    case "array":
      if (Array.isArray(value)) value.forEach((v, n) => check(v, type.elem, file, `${at}[${n}]`, errors));
      return;
    case "ref": {
      const resolved = resolveName(file, type.name);
      if (resolved) check(value, resolved[0], resolved[1], at, errors);
      return;  // unknown names (generics, base types): not walked
    }
    case "index": {
      const resolved = resolveName(file, type.base.name);
      if (resolved && resolved[0].kind === "object" && resolved[0].props.has(type.key)) {
        check(value, resolved[0].props.get(type.key), resolved[1], at, errors);
      }
      return;
    }
    case "union": {
      const objects = type.members.filter((m) => m.kind !== "prim");
      if (objects.length === 1) check(value, objects[0], file, at, errors);
      return;
    }
    case "object":
      if (!isPlainObject(value)) return;
      for (const [key, v] of Object.entries(value)) {
        if (type.props.has(key)) check(v, type.props.get(key), file, `${at}.${key}`, errors);
        else if (type.index) check(v, type.index, file, `${at}[${key}]`, errors);
        else errors.push(`${at}.${key}: unknown field`);
      }
      return;
  }
}

/** The .d.ts that declares a kind, for the API groups these manifests use. */
export function declarationFile(apiVersion, kind) {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return path.join(packageDir("@kubernetes-models/prometheus-operator"), apiVersion, `${kind}.d.ts`);
  }
  return path.join(packageDir("kubernetes-models"), apiVersion, `${kind}.d.ts`);
}

/** Unknown fields of a Kubernetes object, as "Kind/name.path: unknown field" strings. */
export function unknownFields(obj) {
  const file = declarationFile(obj.apiVersion, obj.kind);
  if (!existsSync(file)) return [`${obj.apiVersion} ${obj.kind}: no declarations to check against`];
  const resolved = resolveName(file, `I${obj.kind}`);
  if (!resolved) return [`${obj.kind}: interface I${obj.kind} not found in ${file}`];
  const errors = [];
  check(obj, resolved[0], resolved[1], `${obj.kind}/${obj.metadata?.name ?? "?"}`, errors);
  return errors;
}
