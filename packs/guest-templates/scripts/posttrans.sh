# Reload the templates if xapi runs; at install time (xapi down) the boot-time service does it.
/usr/bin/create-guest-templates-wrapper || :
