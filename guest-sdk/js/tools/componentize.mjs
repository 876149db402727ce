// Builds a JS tenant into a component with componentize-js's API (its
// command line fails to read WIT paths: "failed to get path metadata … os
// error 44"). `sluice build` and `cargo xtask build-examples` run it:
//
//   node componentize.mjs --toolchain DIR --sdk DIR --wit PATH --tenant DIR
//        --entry FILE --stage DIR --out FILE
//
// The tenant's modules and the SDK are copied into a staging directory,
// with the `@sluice/guest` imports rewritten to relative paths (the engine
// resolves only relative module paths), and componentized there with
// every optional engine feature disabled: a default build imports
// `wasi:http/*`, `wasi:filesystem/*`, clocks and random, which the host
// refuses; without them the component imports only `sluice:analytics/*`.

import { cp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";

const DISABLED = ["stdio", "random", "clocks", "http", "fetch-event"];
const SKIP = new Set(["node_modules", "target", "test", "tests", "sluice-guest"]);

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ["toolchain", "sdk", "wit", "tenant", "entry", "stage", "out"]) {
    if (!out[k]) throw new Error(`missing --${k}`);
  }
  return out;
}

async function copyModules(from, to, sdkDir) {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || SKIP.has(entry.name)) continue;
    const src = join(from, entry.name), dst = join(to, entry.name);
    if (entry.isDirectory()) {
      await copyModules(src, dst, sdkDir);
    } else if (/\.(m?js)$/.test(entry.name)) {
      let rel = relative(to, sdkDir).split(sep).join("/");
      if (!rel.startsWith(".")) rel = `./${rel}`;
      const text = (await readFile(src, "utf8")).replace(
        /(["'])@sluice\/guest(\/component)?\1/g,
        (_, q, sub) => `${q}${rel}/${sub ? "component" : "index"}.js${q}`,
      );
      await writeFile(dst, text);
    }
  }
}

const a = args();
// Every path resolved before the working directory changes.
const stage = resolve(a.stage), out = resolve(a.out), wit = resolve(a.wit);
await rm(stage, { recursive: true, force: true });
const sdk = join(stage, "sluice-guest");
await cp(resolve(a.sdk), sdk, { recursive: true });
await copyModules(resolve(a.tenant), stage, sdk);

const api = join(resolve(a.toolchain), "node_modules", "@bytecodealliance", "componentize-js", "src", "componentize.js");
const { componentize } = await import(pathToFileURL(api).href);
const started = Date.now();
// componentize-js maps the working directory to `/` when the source is
// under it: the staged modules' relative imports resolve there.
process.chdir(stage);
// With SLUICE_WEVAL naming a weval binary (`cargo install weval`), the
// engine is partially evaluated ahead of time (componentize-js's
// `enableAot`): the tenant's JS then runs through compiled interpreter
// paths instead of the generic interpreter loop.
const weval = process.env.SLUICE_WEVAL;
const { component, imports } = await componentize({
  sourcePath: join(stage, a.entry),
  witPath: wit,
  worldName: "tenant",
  disableFeatures: DISABLED,
  ...(weval ? { enableAot: true, wevalBin: resolve(weval) } : {}),
});
const foreign = imports.filter(([name]) => !String(name).startsWith("sluice:analytics/"));
if (foreign.length > 0) {
  throw new Error(`the tenant imports ${foreign.map(([n, f]) => `${n}#${f}`).join(", ")}: only sluice:analytics/* is offered`);
}
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.error(`componentize-js: ${out} (${(component.length / 1e6).toFixed(1)} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
