// Types of what the integration global setup provides, so `inject('pg')` is typed in every test.
import type {} from 'vitest';
import type { ProvidedPg } from './global-setup.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: ProvidedPg;
  }
}
