/**
 * The store, for the roles that read or write it (all but `sensors`):
 * MongoDB when `MONGO_URL` is set, else the embedded Deno KV file.
 *
 * @module
 */
import { describeStore, openStore, type Store } from "../adapters/ports.ts";
import type { Config } from "../schemas/config.ts";
import type { Logger } from "../actors/logger.ts";

/** Opens the configured store; disposing it closes it. */
export async function openStoreRole(config: Config, logger: Logger): Promise<Store> {
  const store = await openStore(config, logger);
  const { kind, where } = describeStore(config);
  logger.info("store open", { store: kind, at: where });
  return store;
}
