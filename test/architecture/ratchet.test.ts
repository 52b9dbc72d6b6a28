// The shape of src/, held by limits that only go down (lower a limit in the same commit that earns it; never
// raise one). What is counted (docs/architecture.md, "Layers"):
// - files that sit in an import cycle (any `import`/`export ... from` of a relative module, type-only ones
//   included: a type cycle is still a layering cycle);
// - folders of src/ that sit in a cycle of the folder graph (src/a imports src/b imports src/a);
// - names the main entry exports at run time;
// - source files over 500 lines (each one that stays says why at its top).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as entry from 'meshfetch';

const LIMITS = {
  filesInCycles: 0,
  foldersInCycles: 0,
  mainEntryRuntimeExports: 48,
  filesOver500Lines: 0,
};

const src = resolve(import.meta.dirname, '../../src');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative imports of a file, resolved to the .ts files they name. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s+'(\.{1,2}\/[^']+)'/g)) {
    out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  for (const m of text.matchAll(/(?:^|\n)\s*import\s+'(\.{1,2}\/[^']+)'/g)) {
    out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  return out;
}

/** The nodes that sit in a cycle: strongly connected components of more than one node, or with a self-edge. */
function nodesInCycles(nodes: string[], edges: Map<string, Set<string>>): string[] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || edges.get(v)?.has(v)) out.push(...component);
    }
  };
  for (const v of nodes) if (!index.has(v)) visit(v);
  return out.sort();
}

const files = sourceFiles(src);
const fileEdges = new Map(files.map((f) => [f, new Set(importsOf(f))]));
const folderOf = (f: string): string => {
  const parts = relative(src, f).split('/');
  return parts.length > 1 ? parts[0]! : '.';
};
const folderEdges = new Map<string, Set<string>>();
for (const [f, targets] of fileEdges) {
  for (const t of targets) {
    const a = folderOf(f);
    const b = folderOf(t);
    if (a === b) continue;
    if (!folderEdges.has(a)) folderEdges.set(a, new Set());
    folderEdges.get(a)!.add(b);
  }
}

describe('the shape of src/ (limits only go down)', () => {
  it(`at most ${LIMITS.filesInCycles} files sit in an import cycle`, () => {
    const inCycles = nodesInCycles(files, fileEdges).map((f) => relative(src, f));
    expect(inCycles.length, inCycles.join(', ')).toBeLessThanOrEqual(LIMITS.filesInCycles);
  });

  it(`at most ${LIMITS.foldersInCycles} folders sit in a cycle of the folder graph`, () => {
    const folders = [...new Set(files.map(folderOf))];
    const inCycles = nodesInCycles(folders, folderEdges);
    expect(inCycles.length, inCycles.join(', ')).toBeLessThanOrEqual(LIMITS.foldersInCycles);
  });

  it(`the main entry exports at most ${LIMITS.mainEntryRuntimeExports} names at run time`, () => {
    expect(Object.keys(entry).length).toBeLessThanOrEqual(LIMITS.mainEntryRuntimeExports);
  });

  it(`at most ${LIMITS.filesOver500Lines} source files are over 500 lines`, () => {
    const long = files
      .filter((f) => readFileSync(f, 'utf8').trimEnd().split('\n').length > 500)
      .map((f) => relative(src, f));
    expect(long.length, long.join(', ')).toBeLessThanOrEqual(LIMITS.filesOver500Lines);
  });

  it('the cycle finder finds a cycle it is shown', () => {
    const edges = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['c'])],
      ['c', new Set(['a'])],
      ['d', new Set(['a'])],
    ]);
    expect(nodesInCycles(['a', 'b', 'c', 'd'], edges)).toEqual(['a', 'b', 'c']);
  });
});
