Feature: Adding, editing, deleting and stopping servers with their settings
  As a PACS administrator
  I want to give a server its settings when I add it, change them later (while it runs, too),
  unregister it without losing its images, and stop it without cutting transfers short
  So that I never edit settings.toml by hand nor restart a server for a change that can wait

  `pacsref server add|edit|delete|stop` (docs/manager.md) run as an administrator runs them, in
  a root folder of their own for each scenario, against real twistd daemons. A failing command
  prints one line "pacsref: <reason>" and exits 1. Some settings apply while the server runs
  (max_clients, timeouts, ...), others at the next start (port, IP address, ...); the table is
  in docs/manager.md, "Live and restart-only settings".

  @fixture.pacsref.root
  Scenario: A server is added with settings of its own; a value out of range is refused
    When I run "pacsref server add NORTH --port <a free port> --ip-address 127.0.0.1 --max-clients 2 --artim-timeout 5 --no-allow-anonymous --stop-timeout 1"
    Then it succeeds, printing "added server NORTH in <root>/NORTH"
    When I run "pacsref server add SOUTH --port <a free port> --max-clients 0"
    Then it fails, saying "command line: max_clients = 0 is out of range; allowed: an integer 1-100000"
    When I run "pacsref server list"
    Then the output has a line matching "^NORTH +NORTH +\d+  stopped +-$"
    And the output does not mention "SOUTH"
    Given I have run "pacsref server start NORTH"
    When the administrator of "NORTH" sends "GetSettings"
    Then the response to "GetSettings" succeeds with data
      """
      [{"ae_title": "NORTH", "port": <port of NORTH>, "ip_address": "127.0.0.1", "max_clients": 2,
        "artim_timeout": 5.0, "allow_anonymous": false, "stop_timeout": 1.0}]
      """
    When the modality "CT_UNKNOWN" asks server "NORTH" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)

  @fixture.pacsref.root
  Scenario: A stopped server's settings file is rewritten; mistakes change nothing
    Given I have run "pacsref server add QUIET --port <a free port> --ip-address 127.0.0.1"
    When I run "pacsref server edit QUIET --max-clients 3 --client-timeout 7"
    Then it succeeds, printing "edited QUIET (stopped): max_clients, client_timeout"
    And the settings file of "QUIET" has
      | setting        | value |
      | max_clients    | 3     |
      | client_timeout | 7.0   |
    When I run "pacsref server edit QUIET"
    Then it fails, saying "no change given; name settings with their options (pacsref server edit --help) or --set key=value"
    When I run "pacsref server edit QUIET --max-clients 0 --artim-timeout -1"
    Then it fails, saying "command line: max_clients = 0 is out of range; allowed: an integer 1-100000; command line: artim_timeout = -1.0 is out of range; allowed: a number of seconds from 0.001 to 31536000"
    When I run "pacsref server edit QUIET --set 'ae_title="OTHER"'"
    Then it fails, saying "command line: ae_title = "OTHER" cannot be changed: the AE title names the server directory and its admin socket; add a new server with `pacsref server add` instead"
    And the settings file of "QUIET" has
      | setting        | value   |
      | ae_title       | "QUIET" |
      | max_clients    | 3       |
      | artim_timeout  | 30.0    |
      | client_timeout | 7.0     |

  @fixture.pacsref.root
  Scenario: A running server applies a live change at once and keeps the port for its next start
    Given I have run "pacsref server add LIVE --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server start LIVE"
    And the port server "LIVE" listens on now is noted
    And the modality "CT_FIRST" holds an association with server "LIVE"
    When the modality "MR_SECOND" asks server "LIVE" for an association
    Then the association is accepted
    When I run "pacsref server edit LIVE --max-clients 1"
    Then it succeeds, printing "edited LIVE: applied live: max_clients"
    And the output does not mention "restart"
    When the modality "MR_SECOND" asks server "LIVE" for an association
    Then the association is rejected as "local limit exceeded" (2, 3, 2)
    When the modality "CT_FIRST" releases its association with server "LIVE"
    And I run "pacsref server edit LIVE --port <a free port> --client-timeout 60"
    Then it succeeds, printing "edited LIVE: applied live: client_timeout"
    And the output has a line matching "^LIVE: saved, applies at next restart: port \(pacsref server stop LIVE && pacsref server start LIVE\)$"
    And the server "LIVE" still runs on its noted port, not on the port in its settings file
    When I run "pacsref server edit LIVE --set 'ae_title="OTHER"'"
    Then it fails, saying "server LIVE: UpdateSettings failed: UpdateSettings: ae_title = "OTHER" cannot be changed: the AE title names the server directory and its admin socket; add a new server with `pacsref server add` instead"
    When I run "pacsref server stop LIVE"
    And I run "pacsref server start LIVE"
    Then it succeeds, printing "started LIVE (pid"
    And the server "LIVE" runs on the port in its settings file, no longer on its noted port
    When the administrator of "LIVE" sends "GetSettings"
    Then the response to "GetSettings" succeeds with data
      """
      [{"ae_title": "LIVE", "port": <port of LIVE>, "max_clients": 1, "client_timeout": 60.0}]
      """

  @fixture.pacsref.servers
  Scenario: UpdateSettings over the admin socket changes one server and not its neighbour
    Given these servers run side by side in one root folder
      | server | settings |
      | PACS_A |          |
      | PACS_B |          |
    And the modality "CT_HELD_A" holds an association with server "PACS_A"
    And the modality "CT_HELD_B" holds an association with server "PACS_B"
    When the administrator of "PACS_A" sends "UpdateSettings" with data
      """
      [{"max_clients": 1, "artim_timeout": 7, "max_pdu_length": 32768}]
      """
    Then the response to "UpdateSettings" succeeds with data
      """
      [["max_clients", "artim_timeout"], ["max_pdu_length"]]
      """
    When the modality "MR_NEXT" asks server "PACS_A" for an association
    Then the association is rejected as "local limit exceeded" (2, 3, 2)
    When the modality "MR_NEXT" asks server "PACS_B" for an association
    Then the association is accepted
    When the administrator of "PACS_A" sends "UpdateSettings" with data
      """
      [{"max_clientz": 2}]
      """
    Then the response to "UpdateSettings" fails with an error starting "UpdateSettings: max_clientz = 2 is not a known setting (did you mean max_clients?); allowed: the keys ae_title, "
    When the administrator of "PACS_A" sends "UpdateSettings" with data
      """
      [{"max_clients": 0}]
      """
    Then the response to "UpdateSettings" fails with error "UpdateSettings: max_clients = 0 is out of range; allowed: an integer 1-100000"
    When the administrator of "PACS_A" sends "UpdateSettings" with data
      """
      [{"max_clients": "two"}]
      """
    Then the response to "UpdateSettings" fails with error "UpdateSettings: max_clients = "two" has the wrong type (string); allowed: an integer 1-100000"
    When the administrator of "PACS_A" sends "UpdateSettings" with data
      """
      [{"max_clients": null}]
      """
    Then the response to "UpdateSettings" fails with error "UpdateSettings: max_clients = null has the wrong type (null); allowed: an integer 1-100000"
    When the administrator of "PACS_A" sends "UpdateSettings" with data
      """
      [["max_clients", 2]]
      """
    Then the response to "UpdateSettings" fails with error "UpdateSettings data[0] (changes): must be a settings object, not a list"
    When the administrator of "PACS_A" sends "GetSettings"
    Then the response to "GetSettings" succeeds with data
      """
      [{"ae_title": "PACS_A", "max_clients": 1, "artim_timeout": 7.0, "max_pdu_length": 131072}]
      """
    When the administrator of "PACS_B" sends "GetSettings"
    Then the response to "GetSettings" succeeds with data
      """
      [{"ae_title": "PACS_B", "max_clients": 100, "artim_timeout": 30.0, "max_pdu_length": 131072}]
      """

  @fixture.pacsref.root
  Scenario: A temporary directory the server could not write in is refused when it is set
    Given I have run "pacsref server add SPOOL --port <a free port> --ip-address 127.0.0.1"
    When I run "pacsref server edit SPOOL --temporary-directory /proc/nope"
    Then it fails, saying "cannot use temporary_directory '/proc/nope': cannot create /proc/nope: No such file or directory"
    When I run "pacsref server edit SPOOL --temporary-directory /etc/hostname"
    Then it fails, saying "cannot use temporary_directory '/etc/hostname': /etc/hostname is not a directory"
    When I run "pacsref server edit SPOOL --temporary-directory spool/dicom"
    Then it succeeds, printing "edited SPOOL (stopped): temporary_directory"
    When I run "pacsref server start SPOOL"
    Then it succeeds, printing "started SPOOL (pid"

  @fixture.pacsref.root
  Scenario: Nagle's algorithm is switched on and off with --nagle and --no-delay
    Given I have run "pacsref server add QUICK --port <a free port> --ip-address 127.0.0.1 --nagle"
    Then the settings file of "QUICK" has
      | setting  | value |
      | no_delay | false |
    When I run "pacsref server edit QUICK --no-delay"
    Then it succeeds, printing "edited QUICK (stopped): no_delay"
    And the settings file of "QUICK" has
      | setting  | value |
      | no_delay | true  |

  @fixture.pacsref.root
  Scenario: A server is deleted only once stopped; its directory and images remain
    Given I have run "pacsref server add GONE --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server start GONE"
    And the modality "CT_ROOM_1" stores a new image on server "GONE"
    When I run "pacsref server delete GONE"
    Then it fails, saying "server GONE is running (pid"
    And the server "GONE" holds 1 stored image
    Given I have run "pacsref server stop GONE"
    When I run "pacsref server delete GONE"
    Then it succeeds, printing "deleted server GONE; its directory <root>/GONE remains (restore: mv <root>/GONE/settings.toml.deleted <root>/GONE/settings.toml)"
    And the directory of "GONE" remains, its settings kept as "settings.toml.deleted", with 1 stored image
    When I run "pacsref server list"
    Then the output has a line matching "^NAME +AE +PORT +STATE +PID$"
    And the output does not mention "GONE"
    When I run "pacsref server add GONE --port <a free port>"
    Then it fails, saying "<root>/GONE holds the deleted server GONE; restore it with `mv <root>/GONE/settings.toml.deleted <root>/GONE/settings.toml`, or move the directory away first"

  @fixture.pacsref.root
  Scenario: A stop lets open associations finish for stop_timeout, refusing new ones, then aborts
    Given I have run "pacsref server add GRACE --port <a free port> --ip-address 127.0.0.1 --stop-timeout 1"
    And I have run "pacsref server start GRACE"
    And the modality "US_IDLE" is associated with server "GRACE" and sends nothing
    And the modality "CT_LATE" has connected to server "GRACE" without asking for anything
    When I start "pacsref server stop GRACE" without waiting for it to end
    Then the server "GRACE" stops listening on its port within 5 seconds
    When the modality "CT_LATE" now asks for an association on that connection
    Then the association is rejected as "temporary congestion" (2, 3, 1)
    And the server aborts the association of "US_IDLE" about 1 second after it stopped listening
    And that command ends within 5 seconds, printing "stopped GRACE (pid"
