export { type Command, commands, main, USAGE } from "./main.js";
