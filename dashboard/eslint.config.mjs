// The dashboard's linter: ESLint's and typescript-eslint's recommended rules (type-aware), the
// rules of React hooks, and Next.js's own rules. `npm run lint`; `make test` runs it.
import js from "@eslint/js";
import nextPlugin from "@next/eslint-plugin-next";
import reactHooks from "eslint-plugin-react-hooks";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["out/**", ".next/**", "node_modules/**", "next-env.d.ts", "src/api/schema.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    plugins: { "react-hooks": reactHooks, "@next/next": nextPlugin },
    rules: {
      ...reactHooks.configs.recommended.rules,
      ...nextPlugin.configs.recommended.rules,
      ...nextPlugin.configs["core-web-vitals"].rules,
    },
  },
  {
    files: ["**/*.mjs", "e2e/**", "*.config.ts"],
    ...tseslint.configs.disableTypeChecked,
  },
);
