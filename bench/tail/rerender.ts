/**
 * Re-renders the tail benchmark's Markdown, SVG and docs block from a saved result (bench/results/tail.json)
 * without measuring again: for changes to the report's layout or wording after a run. The figures, machine and
 * command are the saved run's; the targets are judged again from them.
 *
 * Run: npx tsx bench/tail/rerender.ts [--quick] [--no-docs]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../lib/cli.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import {
  evaluateTargets,
  printTables,
  renderMarkdown,
  renderSvg,
  updateDocs,
  type TailResults,
} from './report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const dir = path.join(repo, 'bench', 'results', flags.quick === true ? 'quick' : '');
  const doc = JSON.parse(readFileSync(path.join(dir, 'tail.json'), 'utf8')) as TailResults;
  doc.targets = evaluateTargets(doc.strategies);
  printTables(doc);
  await writeJson(path.join(dir, 'tail.json'), doc);
  const md = await writeFormatted(path.join(dir, 'tail.md'), renderMarkdown(doc));
  writeFileSync(path.join(dir, 'tail.svg'), renderSvg(doc));
  console.log(`\nwrote ${path.relative(repo, dir) || '.'}/tail.{json,md,svg}`);
  if (flags.quick !== true && flags['no-docs'] !== true) updateDocs(repo, md);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
