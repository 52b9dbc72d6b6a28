// node:test reporter for scripts/undici-fetch-suite/run.mjs: one JSON line per finished test (suites left out).
export default async function* reporter(source) {
  for await (const ev of source) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    const d = ev.data;
    if (d.details?.type === 'suite') continue;
    let result = ev.type === 'test:pass' ? 'pass' : 'fail';
    if (d.skip !== undefined && d.skip !== false) result = 'skip';
    else if (d.todo !== undefined && d.todo !== false) result = 'todo';
    const err = d.details?.error;
    const cause = err?.cause ?? err;
    yield `${JSON.stringify({
      result,
      file: d.file,
      name: d.name,
      nesting: d.nesting,
      ...(result === 'fail'
        ? {
            error: String(cause?.stack ?? cause)
              .split('\n')
              .slice(0, 3)
              .join(' | ')
              .slice(0, 400),
          }
        : {}),
    })}\n`;
  }
}
