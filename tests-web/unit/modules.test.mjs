// The shape of frontend/js as a whole, read as text (no module is run): every module opens
// with a comment saying what it owns (vendored files instead are listed, with their checksum,
// in js/vendor/README.md), every relative import names a file that exists, the imports form
// no cycle, and every page's <script> is a module that exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FRONTEND_JS } from './paths.mjs';

const root = fileURLToPath(FRONTEND_JS);
const frontend = dirname(root);

function modules(dir = root) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return modules(path);
    return entry.name.endsWith('.js') ? [path] : [];
  });
}

/** Static and dynamic import specifiers, and `export … from`, of a module's source. */
export function specifiers(source) {
  const found = [];
  const pattern = /\b(?:import|export)\s*\(?\s*(?:[^'"`;()]*?\bfrom\s*)?['"]([^'"]+)['"]/g;
  for (const match of source.matchAll(pattern)) found.push(match[1]);
  return found;
}

/** Each module's relative imports as absolute paths. */
function graph() {
  const edges = new Map();
  for (const file of modules()) {
    const imports = specifiers(readFileSync(file, 'utf8'))
      .filter((s) => s.startsWith('./') || s.startsWith('../'))
      .map((s) => resolve(dirname(file), s));
    edges.set(file, imports);
  }
  return edges;
}

/** The first import cycle found, as a list of files (first = last), or null. */
export function findCycle(edges) {
  const state = new Map(); // file -> 'open' | 'done'
  const stack = [];
  function visit(file) {
    if (state.get(file) === 'done') return null;
    if (state.get(file) === 'open') return [...stack.slice(stack.indexOf(file)), file];
    state.set(file, 'open');
    stack.push(file);
    for (const next of edges.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(file, 'done');
    return null;
  }
  for (const file of edges.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return null;
}

test('the import reader and the cycle finder find what they should', () => {
  const source = [
    "import { a } from './a.js';",
    'import {',
    '  b,',
    "} from '../b.js';",
    "import './side.js';",
    "export { c } from './c.js';",
    "const d = await import('./d.js');",
    '// a comment that says import, but names no file',
  ].join('\n');
  assert.deepEqual(specifiers(source), ['./a.js', '../b.js', './side.js', './c.js', './d.js']);
  assert.deepEqual(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a', 'b', 'c', 'a']);
  assert.equal(findCycle(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), null);
});

test('every frontend module opens with a comment saying what it owns', () => {
  const files = modules();
  assert.ok(files.length >= 20, `${files.length} modules found under ${root}`);
  for (const file of files) {
    if (relative(root, file).startsWith('vendor/')) continue; // copied unchanged: see the next test
    const first = readFileSync(file, 'utf8').split('\n')[0];
    assert.match(first, /^\/\/ \S/, `${relative(frontend, file)} opens without a comment`);
  }
});

test('every vendored file is listed in js/vendor/README.md with its version and the sha256 it has', () => {
  const vendor = join(root, 'vendor');
  const readme = readFileSync(join(vendor, 'README.md'), 'utf8');
  const files = readdirSync(vendor).filter((name) => name.endsWith('.js'));
  assert.ok(files.length >= 1, 'the QR encoder is vendored');
  for (const name of files) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\``));
    assert.ok(row, `${name} has no row in js/vendor/README.md`);
    const sha = createHash('sha256').update(readFileSync(join(vendor, name))).digest('hex');
    assert.ok(row.includes(sha), `${name} does not match the sha256 its README row names (it is ${sha})`);
    assert.match(row, /\| \d+\.\d+\.\d+ \|/, `${name}'s row names no version`);
  }
});

test('every relative import exists and the imports form no cycle', () => {
  const edges = graph();
  for (const [file, imports] of edges) {
    for (const target of imports) assert.ok(existsSync(target), `${relative(frontend, file)} imports a missing ${relative(frontend, target)}`);
  }
  const cycle = findCycle(edges);
  assert.equal(cycle, null, `import cycle: ${cycle?.map((f) => relative(frontend, f)).join(' -> ')}`);
});

test("every page's script is a module that exists", () => {
  const pages = readdirSync(frontend).filter((name) => name.endsWith('.html'));
  assert.ok(pages.length >= 4);
  for (const page of pages) {
    const html = readFileSync(join(frontend, page), 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>/g)].map((m) => m[1]);
    // The 404 page is static on purpose: it answers for any unknown path and needs nothing.
    if (page === '404.html') {
      assert.equal(scripts.length, 0, '404.html loads no script');
      continue;
    }
    assert.ok(scripts.length >= 1, `${page} has no script`);
    for (const attrs of scripts) {
      assert.match(attrs, /\btype="module"/, `${page}: a script that is not a module`);
      const src = /\bsrc="([^"]+)"/.exec(attrs)?.[1];
      assert.ok(src, `${page}: an inline script (the CSP forbids it)`);
      assert.ok(existsSync(join(frontend, src)), `${page}: ${src} does not exist`);
    }
  }
});
