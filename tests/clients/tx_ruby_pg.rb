# Ruby's pg (libpq) with default settings running the workload of tx_workload.py: each unit of
# work in `conn.transaction { ... }` (BEGIN, then COMMIT, or ROLLBACK when the block raises),
# reads with `exec_params` (extended protocol, unnamed statement). Prints the transcript as JSON.
# Usage: ruby tx_ruby_pg.rb HOST PORT reads|writes|all TABLE
require 'json'
require 'pg'

ITERATIONS = 200
READ_KEYS = [1, 2, 3].freeze
KEY = 2
COMMITTED = 'two-committed'
ROLLED_BACK = 'two-rolled-back'

HOST, PORT, PHASE, TABLE = ARGV
SELECT = "SELECT v FROM #{TABLE} WHERE id = $1"
UPDATE = "UPDATE #{TABLE} SET v = $1 WHERE id = $2"

# Rolls a transaction block back, like any error raised inside it, without being one.
class Rollback < StandardError; end

def connect
  PG.connect(host: HOST, port: PORT.to_i, user: 'postgres', dbname: 'app', sslmode: 'disable',
             connect_timeout: 10)
end

def read(conn, key = KEY)
  conn.exec_params(SELECT, [key]).getvalue(0, 0)
end

def unit(conn, key = KEY)
  conn.transaction { read(conn, key) }
end

def reads
  conn = connect
  values = (0...ITERATIONS).map { |i| unit(conn, READ_KEYS[i % READ_KEYS.size]) }
  conn.close
  { 'reads' => values }
end

def writes
  a = connect
  b = connect
  out = { 'b_before' => Array.new(3) { unit(b) } }
  a.transaction do
    out['a_before_write'] = read(a)
    out['updated'] = a.exec_params(UPDATE, [COMMITTED, KEY]).cmd_tuples
    out['a_own_write'] = read(a)
    out['b_during'] = unit(b)
  end
  out['a_after_commit'] = unit(a)
  out['b_after_commit'] = unit(b)
  begin
    a.transaction do
      out['rolled_back_updated'] = a.exec_params(UPDATE, [ROLLED_BACK, KEY]).cmd_tuples
      out['a_own_rollback'] = read(a)
      out['b_during_rollback'] = unit(b)
      raise Rollback
    end
  rescue Rollback
    nil
  end
  out['a_after_rollback'] = unit(a)
  out['b_after_rollback'] = unit(b)
  c = connect
  out['c_after_rollback'] = unit(c)
  [a, b, c].each(&:close)
  out
end

out = {}
out.merge!(reads) unless PHASE == 'writes'
out.merge!(writes) unless PHASE == 'reads'
puts JSON.generate(out.sort.to_h)
