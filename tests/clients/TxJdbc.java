// pgjdbc with default settings (prepareThreshold 5: a PreparedStatement used five times becomes a
// named server-side statement) running the workload of tx_workload.py, with autocommit on (each
// read is its own transaction; the write transactions turn autocommit off for their duration, as
// JDBC code does) or off (the driver sends BEGIN before the first statement, the code commits).
// Prints the transcript as JSON, keys sorted.
// Usage: java -cp postgresql.jar TxJdbc.java HOST PORT reads|writes|all TABLE autocommit|manual
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

public class TxJdbc {
    static final int ITERATIONS = 200;
    static final int[] READ_KEYS = {1, 2, 3};
    static final int KEY = 2;
    static final String COMMITTED = "two-committed";
    static final String ROLLED_BACK = "two-rolled-back";

    static String url;
    static String table;
    static boolean autocommit;

    static Connection connect() throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", "postgres");
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        Connection conn = DriverManager.getConnection(url, props);
        conn.setAutoCommit(autocommit);
        return conn;
    }

    /** Reads `key` in the connection's current transaction (or its own, with autocommit). */
    static String read(Connection conn, int key) throws SQLException {
        try (PreparedStatement st = conn.prepareStatement("SELECT v FROM " + table + " WHERE id = ?")) {
            st.setInt(1, key);
            try (ResultSet rs = st.executeQuery()) {
                rs.next();
                return rs.getString(1);
            }
        }
    }

    /** Reads `key` as a unit of work: committed unless autocommit already did. */
    static String readAndCommit(Connection conn, int key) throws SQLException {
        String value = read(conn, key);
        if (!conn.getAutoCommit()) {
            conn.commit();
        }
        return value;
    }

    static int update(Connection conn, String value) throws SQLException {
        try (PreparedStatement st = conn.prepareStatement("UPDATE " + table + " SET v = ? WHERE id = ?")) {
            st.setString(1, value);
            st.setInt(2, KEY);
            return st.executeUpdate();
        }
    }

    static String quote(String text) {
        return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static String json(Object value) {
        if (value instanceof String s) {
            return quote(s);
        }
        if (value instanceof List<?> list) {
            List<String> items = new ArrayList<>();
            for (Object item : list) {
                items.add(json(item));
            }
            return "[" + String.join(", ", items) + "]";
        }
        return String.valueOf(value);
    }

    static Map<String, Object> reads() throws SQLException {
        List<String> values = new ArrayList<>();
        try (Connection conn = connect()) {
            for (int i = 0; i < ITERATIONS; i++) {
                values.add(readAndCommit(conn, READ_KEYS[i % READ_KEYS.length]));
            }
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("reads", values);
        return out;
    }

    static Map<String, Object> writes() throws SQLException {
        Map<String, Object> out = new TreeMap<>();
        try (Connection a = connect(); Connection b = connect()) {
            List<String> before = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                before.add(readAndCommit(b, KEY));
            }
            out.put("b_before", before);
            // Commit path.
            a.setAutoCommit(false);
            out.put("a_before_write", read(a, KEY));
            out.put("updated", update(a, COMMITTED));
            out.put("a_own_write", read(a, KEY));
            out.put("b_during", readAndCommit(b, KEY));
            a.commit();
            a.setAutoCommit(autocommit);
            out.put("a_after_commit", readAndCommit(a, KEY));
            out.put("b_after_commit", readAndCommit(b, KEY));
            // Rollback path.
            a.setAutoCommit(false);
            out.put("rolled_back_updated", update(a, ROLLED_BACK));
            out.put("a_own_rollback", read(a, KEY));
            out.put("b_during_rollback", readAndCommit(b, KEY));
            a.rollback();
            a.setAutoCommit(autocommit);
            out.put("a_after_rollback", readAndCommit(a, KEY));
            out.put("b_after_rollback", readAndCommit(b, KEY));
        }
        try (Connection c = connect()) {
            out.put("c_after_rollback", readAndCommit(c, KEY));
        }
        return out;
    }

    public static void main(String[] args) throws SQLException {
        url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/app";
        table = args[3];
        autocommit = switch (args[4]) {
            case "autocommit" -> true;
            case "manual" -> false;
            default -> throw new IllegalArgumentException("MODE is autocommit or manual");
        };
        Map<String, Object> out = new TreeMap<>();
        if (!args[2].equals("writes")) {
            out.putAll(reads());
        }
        if (!args[2].equals("reads")) {
            out.putAll(writes());
        }
        List<String> fields = new ArrayList<>();
        for (var entry : out.entrySet()) {
            fields.add(quote(entry.getKey()) + ": " + json(entry.getValue()));
        }
        System.out.println("{" + String.join(", ", fields) + "}");
    }
}
