import { defineConfig } from "vite";

// Fixed file names (no content hashes): the coordinator embeds exactly
// index.html, app.js and app.css (coordinator/src/api/mod.rs).
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    cssCodeSplit: false,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "app.js",
        chunkFileNames: "app-[name].js",
        assetFileNames: (info) => (info.names?.[0]?.endsWith(".css") ? "app.css" : "[name][extname]"),
        inlineDynamicImports: true,
      },
    },
  },
});
