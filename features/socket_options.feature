Feature: Socket options
  As a PACS administrator tuning a server for its network
  I want the No Delay, Receive Buffer and Send Buffer settings applied to every accepted connection, and the server to listen only on the address I give
  So that the server behaves on the wire as configured, and is not reachable where it should not be

  Socket options do not show on the wire, so the scenario reads them on the server's own
  accepted socket: it borrows a duplicate of that socket with pidfd_getfd(2) (Linux 5.6 and
  later; allowed because the test started the server) and asks getsockopt. Linux doubles a
  requested buffer size to make room for its bookkeeping (socket(7)), so a setting of 65536
  reads back as 131072; TCP_NODELAY reads back as 1 when on. Where the kernel refuses to lend the
  socket, the scenario is skipped with the reason.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario Outline: No Delay <no_delay>, receive buffer <receive_buffer>, send buffer <send_buffer>
    Given the server settings are
      | setting        | value            |
      | no_delay       | <no_delay>       |
      | receive_buffer | <receive_buffer> |
      | send_buffer    | <send_buffer>    |
    When a raw peer "CT_ROOM_1" associates and stays
    Then the server's socket for "CT_ROOM_1" has TCP_NODELAY <nodelay_read>, SO_RCVBUF <rcvbuf_read> and SO_SNDBUF <sndbuf_read>

    Examples:
      | no_delay | receive_buffer | send_buffer | nodelay_read | rcvbuf_read | sndbuf_read |
      | true     | 65536          | 32768       | 1            | 131072      | 65536       |
      | false    | 16384          | 262144      | 0            | 32768       | 524288      |

  @fixture.pacsref.server
  Scenario: The server listens on its IP address setting only
    Given the server is running
    Then a connection to 127.0.0.1 on the server's port is accepted
    And a connection to 127.0.0.2 on the server's port is refused
