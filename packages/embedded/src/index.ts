export { DB_FILE, type EmbeddedOptions, EmbeddedStore, openEmbedded } from "./store.js";
