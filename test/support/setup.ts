// Runs in every test worker. Any unhandled rejection or uncaught exception fails the run: vitest reports
// them as errors and exits non-zero (dangerouslyIgnoreUnhandledErrors is false in vitest.config.ts).
process.on('warning', (w) => {
  if (w.name === 'MaxListenersExceededWarning') throw w;
});
