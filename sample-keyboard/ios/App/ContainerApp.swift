// The container app every keyboard extension ships in: it tells the user how to enable the
// keyboard and lets them try it in a text field.
import SwiftUI

@main
struct ContainerApp: App {
    var body: some Scene {
        WindowGroup {
            SetupView()
        }
    }
}

struct SetupView: View {
    @State private var text = ""

    var body: some View {
        NavigationStack {
            Form {
                Section("Enable the keyboard") {
                    Text("Settings › General › Keyboard › Keyboards › Add New Keyboard… › nextword")
                    Text("Full Access is not needed: suggestions run on this device, offline.")
                        .foregroundStyle(.secondary)
                    Button("Open Settings") {
                        if let url = URL(string: UIApplication.openSettingsURLString) {
                            UIApplication.shared.open(url)
                        }
                    }
                }
                Section("Try it") {
                    TextField("Type here with the nextword keyboard", text: $text, axis: .vertical)
                }
            }
            .navigationTitle("nextword")
        }
    }
}
