/**
 * Re-renders the overhead benchmark's Markdown, SVG (X.json -> X.md, X.svg) and, for overhead.json, the docs
 * block, from a result file, without measuring:
 *   npm run build && npx tsx bench/overhead/rerender.ts [bench/results/overhead.json] [--no-docs]
 * Targets are re-evaluated from the stored cells, so a change to the report code applies to old results.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../lib/cli.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import { renderSvg } from './plot.js';
import { evaluateTargets, renderMarkdown, updateDocs, type OverheadResults } from './report.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const flags = parseFlags(args);
const file = path.resolve(
  args.find((a) => !a.startsWith('--')) ?? path.join(repo, 'bench/results/overhead.json'),
);
const r = JSON.parse(readFileSync(file, 'utf8')) as OverheadResults;
r.targets = evaluateTargets(r.cells, 'version' in r.haproxy, r.baseline?.min);
const dir = path.dirname(file);
// X.json -> X.md and X.svg beside it; only the main result file (overhead.json) feeds the docs block.
const base = path.basename(file, '.json');
await writeJson(file, r);
const md = await writeFormatted(path.join(dir, `${base}.md`), renderMarkdown(r));
writeFileSync(path.join(dir, `${base}.svg`), renderSvg(r));
if (base === 'overhead' && !r.quick && flags['no-docs'] !== true) updateDocs(repo, md);
console.log(`re-rendered ${path.relative(repo, dir)}/${base}.{json,md,svg}`);
