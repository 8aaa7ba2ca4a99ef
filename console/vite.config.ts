// The console's build: one script and one stylesheet under fixed names, written into the Python package, whose
// routes serve them (tenantgate/platform/console/routes.py). Fixed names keep the committed build's diff readable.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/assets/",
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
