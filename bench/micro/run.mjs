// Runs the bench-micro Wasm program under Node's V8 (WASI preview 1), with the acceptance
// cases' directory preopened as /cases:  node run.mjs <bench_micro.wasm> <cases dir>
import { readFile, stat } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const [wasmPath, casesDir] = process.argv.slice(2);
if (!wasmPath || !casesDir) {
  console.error('usage: node run.mjs <bench_micro.wasm> <cases dir>');
  process.exit(2);
}
const isDir = await stat(casesDir).then((s) => s.isDirectory(), () => false);
if (!isDir) {
  console.error(`bench-micro: no acceptance cases at ${casesDir} (the project expects ../shared/cases beside it)`);
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: ['bench-micro', '/cases'], preopens: { '/cases': casesDir } });
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = wasi.getImportObject();
// The tokengate crate links its proxy-wasm glue on wasm32; nothing here calls it.
imports.env = {};
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  if (from === 'env') imports.env[name] = () => { throw new Error(`host function ${name} called`); };
}
const instance = await WebAssembly.instantiate(module, imports);
// The module exports the proxy-wasm _initialize next to _start; WASI may see only _start.
wasi.start({ exports: { memory: instance.exports.memory, _start: instance.exports._start } });
