/**
 * Writes result files formatted the way the repository's Prettier config wants them, so committed results
 * pass `prettier --check bench` without a manual step.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as prettier from 'prettier';

/** Writes `text` to `file`, formatted by Prettier (parser chosen from the file name); returns what it wrote. */
export async function writeFormatted(file: string, text: string): Promise<string> {
  mkdirSync(path.dirname(file), { recursive: true });
  let out = text;
  try {
    const options = (await prettier.resolveConfig(file)) ?? {};
    out = await prettier.format(text, { ...options, filepath: file });
  } catch {
    // Unknown file type or Prettier unavailable: write as is.
  }
  writeFileSync(file, out);
  return out;
}

/** Writes a value as formatted JSON. */
export function writeJson(file: string, value: unknown): Promise<string> {
  return writeFormatted(file, JSON.stringify(value, null, 2) + '\n');
}
