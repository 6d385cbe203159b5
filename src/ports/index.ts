/**
 * Every kind of driver port this vale-ts knows. Each module registers its
 * kind with {@link registerPortKind} when imported: add one line per kind.
 */
export { registerPortKind, driverFactory, portKinds, type DriverSpec, type PortDriver, type DriverFactory } from './driver.js';
import './tap.js';
import './socket-netdev.js';
import './linux-if.js';
import './vhost-user.js';
import './vxlan.js';
