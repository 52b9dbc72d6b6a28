/**
 * Re-renders bench/scale's Markdown, SVG and docs block from a saved result (bench/results/scale.json)
 * without measuring again: for changes to the report's layout or wording after a run, and to quote the
 * current bench/results/discovery.json (the Consul update cost is bench/discovery's measurement, read again
 * here). The scale figures, machine and command are the saved run's; the targets are judged again.
 *
 * Run: npx tsx bench/scale/rerender.ts [--quick] [--no-docs]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../lib/cli.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import {
  consulUpdateRef,
  evaluateTargets,
  printTables,
  renderMarkdown,
  renderSvg,
  updateDocs,
  type ScaleResults,
} from './report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const dir = path.join(repo, 'bench', 'results', flags.quick === true ? 'quick' : '');
  const doc = JSON.parse(readFileSync(path.join(dir, 'scale.json'), 'utf8')) as ScaleResults;
  doc.consulUpdate = consulUpdateRef(repo);
  doc.targets = evaluateTargets(doc.picks, doc.settings.sizes);
  printTables(doc);
  await writeJson(path.join(dir, 'scale.json'), doc);
  const md = await writeFormatted(path.join(dir, 'scale.md'), renderMarkdown(doc));
  writeFileSync(path.join(dir, 'scale.svg'), renderSvg(doc));
  console.log(`\nwrote ${path.relative(repo, dir) || '.'}/scale.{json,md,svg}`);
  if (flags.quick !== true && flags['no-docs'] !== true) updateDocs(repo, md);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
