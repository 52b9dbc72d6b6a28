// The README's code (and every guide's ```ts block) compiles against the real package types, Node 20's
// types included (where `fetch(url, { dispatcher })` needs care). A snippet that drifts from the API fails here.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const outDir = join(root, 'test', '.snippets');

function snippets(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const files = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

describe('documentation code', () => {
  it('the README has a quick start that uses the package entry points', () => {
    const readme = snippets('README.md');
    expect(readme.length).toBeGreaterThan(0);
    expect(readme[0]).toContain("from 'meshfetch'");
    expect(readme[0]).toContain('dispatcher: mesh.dispatcher');
  });

  it('every ```ts block that imports meshfetch type-checks', () => {
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    const written: string[] = [];
    for (const f of files) {
      snippets(f).forEach((code, i) => {
        // Blocks that are fragments (no import of the package) are illustrations, not programs.
        if (!code.includes("from 'meshfetch'")) return;
        const name = join(outDir, `${f.replace(/[/.]/g, '_')}_${i}.ts`);
        writeFileSync(name, `${code}\nexport {};\n`);
        written.push(name);
      });
    }
    expect(written.length).toBeGreaterThan(0);
    const config = ts.getParsedCommandLineOfConfigFile(
      join(root, 'tsconfig.json'),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => {
          throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
        },
      },
    )!;
    const program = ts.createProgram(written, { ...config.options, noEmit: true, noUnusedLocals: false });
    const diags = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && written.includes(d.file.fileName));
    const messages = diags.map(
      (d) =>
        `${d.file!.fileName.replace(outDir, '')}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
    );
    expect(messages).toEqual([]);
  }, 60_000);
});
