// Entry of build/pgwarden.wasm: re-exports every kernel (the framer now; masking joins later).
export * from './framer';
export * from './mask';
