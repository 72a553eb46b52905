// Loaded with `--import` by the reliability suite where no tmpfs can be mounted: every write into a
// file under $GPUNET_FULL_DISK fails with ENOSPC, as it does on a full disk.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { resolve, sep } from 'node:path';

const disk = resolve(process.env.GPUNET_FULL_DISK) + sep;
const onDisk = new Set();
const { openSync, writeSync, closeSync } = fs;
fs.openSync = (path, ...rest) => {
  const fd = openSync(path, ...rest);
  if (resolve(String(path)).startsWith(disk)) onDisk.add(fd);
  return fd;
};
fs.writeSync = (fd, ...rest) => {
  if (onDisk.has(fd)) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
  return writeSync(fd, ...rest);
};
fs.closeSync = (fd) => {
  onDisk.delete(fd);
  return closeSync(fd);
};
syncBuiltinESMExports();
