Feature: Options of a server's add-ins
  As a PACS administrator
  I want to see each add-in of a server with its options, and change them whether the server
  runs or not
  So that I can, for example, make the storage refuse duplicate images without restarting it,
  and know which changes wait for the next start

  `pacsref addins list|config` (docs/manager.md, "Add-in options") and the admin messages
  GetAddInOptions / SetAddInOptions (docs/admin-protocol.md). The storage add-in's options are
  in docs/storage.md: `duplicates` applies at once, `durability` and `index_dsn` at the next
  start. The modalities storing images are pynetdicom. A failing command prints one line
  "pacsref: <reason>" and exits 1.

  @fixture.pacsref.root
  Scenario: Options set on a stopped server are listed, written, and used from its next start
    Given I have run "pacsref server add STORE --port <a free port> --ip-address 127.0.0.1 --addins storage,verification"
    When I run "pacsref addins list STORE"
    Then it succeeds
    And the output has a line matching "^storage +loaded +Storage SCP: stores every C-STORE durably on disk"
    And the output has a line matching "^    duplicates = "keep-first"  \(default "keep-first"; live\)  A SOP Instance UID already stored"
    And the output has a line matching "^    durability = "fsync"  \(default "fsync"; at next start\)"
    And the output has a line matching "^verification +loaded +Verification SOP Class SCP"
    And the output does not mention "security"
    When I run "pacsref addins config STORE storage duplicates=refuse"
    Then it succeeds, printing "saved; STORE is stopped: applies when it starts"
    And the output has a line matching "^duplicates = "refuse"$"
    Given I have run "pacsref server start STORE"
    When I run "pacsref addins list STORE"
    Then it succeeds
    And the output has a line matching "^storage +loaded +Storage SCP"
    And the output has a line matching "^    duplicates = "refuse"  \(default "keep-first"; live\)"
    And the output has a line matching "^verification +loaded +Verification SOP Class SCP"
    When the modality "CT_ROOM_1" stores a new image on server "STORE"
    Then the store gets status 0x0000
    When the modality "CT_ROOM_1" sends that image to server "STORE" again
    Then the store gets status 0x0111
    And the server "STORE" holds 1 stored image

  @fixture.pacsref.root
  Scenario: On a running server, duplicates applies at once and durability at the next start
    Given I have run "pacsref server add LIVE --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server start LIVE"
    When the modality "CT_ROOM_1" stores a new image on server "LIVE"
    And the modality "CT_ROOM_1" sends that image to server "LIVE" again
    Then the store gets status 0x0000
    When I run "pacsref addins config LIVE storage duplicates=refuse"
    Then it succeeds, printing "duplicates = "refuse""
    And the output does not mention "next start"
    When the modality "CT_ROOM_1" sends that image to server "LIVE" again
    Then the store gets status 0x0111
    And the server "LIVE" holds 1 stored image
    When I run "pacsref addins config LIVE storage durability=relaxed"
    Then it succeeds, printing "saved; applies at the next start: durability"
    When I run "pacsref addins config LIVE storage"
    Then the output has a line matching "^duplicates = "refuse"  \(default "keep-first"; live\)"
    And the output has a line matching "^durability = "relaxed"  \(default "fsync"; at next start\)"

  @fixture.pacsref.root
  Scenario: Mistakes in add-in options are refused, and nothing is saved
    Given I have run "pacsref server add CAREFUL --port <a free port> --ip-address 127.0.0.1"
    When I run "pacsref addins config CAREFUL nosuch"
    Then it fails, saying "server CAREFUL has no add-in 'nosuch' (has: security, storage, users, verification)"
    When I run "pacsref addins config CAREFUL verification"
    Then it fails, saying "add-in 'verification' declares no options"
    When I run "pacsref addins config CAREFUL storage duplicats=refuse"
    Then it fails, saying "duplicats: unknown option (did you mean duplicates?); known: accept_unknown_storage_classes, duplicates, durability, index_dsn, minimum_free_space_mib, simulate_full_disk, simulate_crash_after_rename (add-in storage)"
    When I run "pacsref addins config CAREFUL storage duplicates=maybe"
    Then it fails, saying "command line: duplicates = 'maybe': must be one of "keep-first", "overwrite", "refuse" (add-in storage)"
    When I run "pacsref addins config CAREFUL storage duplicates"
    Then it is refused as bad usage, saying "addins config: argument KEY=VALUE: 'duplicates' is not KEY=VALUE"
    When I run "pacsref addins config CAREFUL storage"
    Then it succeeds
    And the output has a line matching "^duplicates = "keep-first"  \(default "keep-first"; live\)"

  @fixture.pacsref.servers
  Scenario: GetAddInOptions and SetAddInOptions change one server's add-in, not its neighbour's
    Given these servers run side by side in one root folder
      | server | settings |
      | PACS_A |          |
      | PACS_B |          |
    When the administrator of "PACS_A" sends "GetAddInOptions" with data
      """
      ["storage"]
      """
    Then the response to "GetAddInOptions" succeeds with data
      """
      [[{"name": "accept_unknown_storage_classes", "kind": "bool", "value": false, "live": true},
        {"name": "duplicates", "kind": "choice", "default": "keep-first", "value": "keep-first",
         "live": true, "choices": ["keep-first", "overwrite", "refuse"]},
        {"name": "durability", "kind": "choice", "default": "fsync", "value": "fsync",
         "live": false, "choices": ["fsync", "relaxed"]},
        {"name": "index_dsn", "kind": "str", "value": "", "live": false},
        {"name": "minimum_free_space_mib", "kind": "int", "default": 256, "value": 256,
         "live": true, "minimum": 0},
        {"name": "simulate_full_disk", "kind": "bool", "value": false, "live": true},
        {"name": "simulate_crash_after_rename", "kind": "bool", "value": false, "live": true}]]
      """
    When the administrator of "PACS_A" sends "SetAddInOptions" with data
      """
      ["storage", {"duplicates": "refuse", "durability": "relaxed"}]
      """
    Then the response to "SetAddInOptions" succeeds with data
      """
      [{"accept_unknown_storage_classes": false, "duplicates": "refuse", "durability": "relaxed",
        "index_dsn": "", "minimum_free_space_mib": 256, "simulate_full_disk": false,
        "simulate_crash_after_rename": false},
       ["durability"]]
      """
    When the modality "CT_ROOM_1" stores a new image on server "PACS_A"
    And the modality "CT_ROOM_1" sends that image to server "PACS_A" again
    Then the store gets status 0x0111
    When the modality "CT_ROOM_1" stores a new image on server "PACS_B"
    And the modality "CT_ROOM_1" sends that image to server "PACS_B" again
    Then the store gets status 0x0000
    When the administrator of "PACS_A" sends "SetAddInOptions" with data
      """
      ["storage", {"duplicats": "overwrite"}]
      """
    Then the response to "SetAddInOptions" fails with error "SetAddInOptions data[1] (changes): duplicats: unknown option (did you mean duplicates?); known: accept_unknown_storage_classes, duplicates, durability, index_dsn, minimum_free_space_mib, simulate_full_disk, simulate_crash_after_rename (add-in storage)"
    When the administrator of "PACS_A" sends "SetAddInOptions" with data
      """
      ["storage", {"duplicates": 3}]
      """
    Then the response to "SetAddInOptions" fails with error "SetAddInOptions data[1] (changes): duplicates = 3: must be a str (one of "keep-first", "overwrite", "refuse") (add-in storage)"
    When the administrator of "PACS_A" sends "SetAddInOptions" with data
      """
      ["storage", "duplicates=overwrite"]
      """
    Then the response to "SetAddInOptions" fails with error "SetAddInOptions data[1] (changes): must be an object of option name -> value, not a string"
    When the administrator of "PACS_A" sends "GetAddInOptions" with data
      """
      ["nosuch"]
      """
    Then the response to "GetAddInOptions" fails with error "no add-in named 'nosuch'; loaded: security, storage, users, verification"
    When the administrator of "PACS_A" sends "GetAddInOptions" with data
      """
      ["verification"]
      """
    Then the response to "GetAddInOptions" fails with error "add-in 'verification' declares no options"
    When the administrator of "PACS_B" sends "GetAddInOptions" with data
      """
      ["storage"]
      """
    Then the response to "GetAddInOptions" succeeds with data
      """
      [[{"name": "accept_unknown_storage_classes", "value": false},
        {"name": "duplicates", "value": "keep-first"},
        {"name": "durability", "value": "fsync"},
        {"name": "index_dsn", "value": ""},
        {"name": "minimum_free_space_mib", "value": 256},
        {"name": "simulate_full_disk", "value": false},
        {"name": "simulate_crash_after_rename", "value": false}]]
      """
    When the administrator of "PACS_A" sends "GetAddInOptions" with data
      """
      ["storage"]
      """
    Then the response to "GetAddInOptions" succeeds with data
      """
      [[{"name": "accept_unknown_storage_classes", "value": false},
        {"name": "duplicates", "value": "refuse"},
        {"name": "durability", "value": "relaxed"},
        {"name": "index_dsn", "value": ""},
        {"name": "minimum_free_space_mib", "value": 256},
        {"name": "simulate_full_disk", "value": false},
        {"name": "simulate_crash_after_rename", "value": false}]]
      """
