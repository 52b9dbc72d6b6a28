// Lint rules. The one that matters most: time and randomness come only from the injected Clock and Rng
// (src/core/clock.ts, src/core/rng.ts), so every algorithm can be tested deterministically (linkerd2-proxy
// bans the ambient clock the same way).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ambient = {
  'no-restricted-properties': [
    'error',
    { object: 'Date', property: 'now', message: 'Use the injected Clock (src/core/clock.ts).' },
    { object: 'performance', property: 'now', message: 'Use the injected Clock (src/core/clock.ts).' },
    { object: 'Math', property: 'random', message: 'Use the injected Rng (src/core/rng.ts).' },
  ],
  'no-restricted-globals': [
    'error',
    { name: 'setTimeout', message: 'Use clock.setTimeout (src/core/clock.ts).' },
    { name: 'setInterval', message: 'Use clock.setTimeout (src/core/clock.ts).' },
    { name: 'clearTimeout', message: 'Use clock.clearTimeout (src/core/clock.ts).' },
    { name: 'clearInterval', message: 'Use the injected Clock.' },
    { name: 'setImmediate', message: 'Use the injected Clock.' },
  ],
  'no-restricted-syntax': [
    'error',
    {
      selector: "NewExpression[callee.name='Date'][arguments.length=0]",
      message: 'Use clock.wallNow() (src/core/clock.ts).',
    },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.consul/**', '.tools/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        Response: 'readonly',
        Request: 'readonly',
        Headers: 'readonly',
        fetch: 'readonly',
        performance: 'readonly',
        structuredClone: 'readonly',
        queueMicrotask: 'readonly',
        ReadableStream: 'readonly',
        DOMException: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/core/clock.ts', 'src/core/rng.ts'],
    rules: ambient,
  },
);
