/**
 * Constants the command line shows before any command runs. Kept free of
 * imports so that `egressfw --version` and `--help` load nothing else
 * (start-up time is part of every cron refresh).
 */
export const VERSION = '0.1.0';
export const DEFAULT_CONFIG_PATH = '/etc/egressfw/egressfw.yml';
export const DEFAULT_STATE_DIR = '/var/lib/egressfw';
export const DEFAULT_PROXY_OUT = 'egress-proxy';
