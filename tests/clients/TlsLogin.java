// Logs in with TLS (pgjdbc, default settings but sslmode=require) as each given role and prints,
// as JSON, the role the server reports or the SQLSTATE of the refusal.
// Usage: java -cp postgresql.jar TlsLogin.java HOST PORT USER:PASSWORD...
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;
import java.util.TreeMap;

public class TlsLogin {
    static String quote(String text) {
        if (text == null) {
            return "null";
        }
        return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    public static void main(String[] args) {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/app";
        TreeMap<String, String> results = new TreeMap<>();
        for (int i = 2; i < args.length; i++) {
            String[] pair = args[i].split(":", 2);
            Properties props = new Properties();
            props.setProperty("user", pair[0]);
            props.setProperty("password", pair[1]);
            props.setProperty("sslmode", "require");
            props.setProperty("connectTimeout", "10");
            String result;
            try (Connection conn = DriverManager.getConnection(url, props);
                 Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT current_user")) {
                rs.next();
                result = "{\"user\": " + quote(rs.getString(1)) + "}";
            } catch (org.postgresql.util.PSQLException e) {
                String message = e.getServerErrorMessage() != null
                    ? e.getServerErrorMessage().getMessage() : e.getMessage();
                result = "{\"sqlstate\": " + quote(e.getSQLState()) + ", \"message\": "
                    + quote(message) + "}";
            } catch (SQLException e) {
                result = "{\"sqlstate\": " + quote(e.getSQLState()) + ", \"message\": "
                    + quote(e.getMessage()) + "}";
            }
            results.put(args[i], result);
        }
        StringBuilder out = new StringBuilder("{");
        boolean first = true;
        for (var entry : results.entrySet()) {
            if (!first) {
                out.append(", ");
            }
            first = false;
            out.append(quote(entry.getKey())).append(": ").append(entry.getValue());
        }
        System.out.println(out.append("}"));
    }
}
