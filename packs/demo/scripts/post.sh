# Nothing to start: the plugin runs on demand from xapi.
exit 0
