// The console's build: one script and one stylesheet under fixed names, written into the Python package, whose
// routes serve them (tenantgate/platform/console/routes.py). Fixed names keep the committed build's diff readable.
// Swagger UI's files (npm swagger-ui-dist) are copied beside them for the gateway's /docs page, so the API docs
// load nothing from a CDN either.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { defineConfig, type Plugin } from "vite";

const SWAGGER_UI = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"];

function swaggerUi(): Plugin {
  const dist = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  return {
    name: "tenantgate-swagger-ui",
    generateBundle() {
      for (const fileName of SWAGGER_UI) {
        const bytes = readFileSync(join(dist, fileName));
        // Source maps are not shipped: drop a comment pointing at one, or the browser's dev tools ask for it (a 404).
        const source = fileName.endsWith(".png") ? bytes : bytes.toString("utf8").replace(/\/[*/]# sourceMappingURL=[^\s*]+\s*(\*\/)?/g, "");
        this.emitFile({ type: "asset", fileName, source });
      }
    },
  };
}

export default defineConfig({
  base: "/console/assets/",
  plugins: [swaggerUi()],
  build: {
    outDir: "../tenantgate/platform/console/static",
    emptyOutDir: true,
    assetsDir: "",
    modulePreload: false,
    cssCodeSplit: false,
    sourcemap: false,
    rollupOptions: {
      output: {
        entryFileNames: "console.js",
        assetFileNames: "console[extname]",
        chunkFileNames: "console-[name].js",
      },
    },
  },
});
